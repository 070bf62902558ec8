/*
 * json.c - the streaming JSON writer behind every --json report (see json.h).
 */
#include "json.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>

static void
json_indent(struct json_writer *w)
{
	int i;

	for (i = 0; i < w->depth; i++)
		fputs("  ", w->f);
}

static void
json_write_string(FILE *f, const char *s)
{
	const unsigned char *p;

	fputc('"', f);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20 || *p >= 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* Starts a member: comma, newline, indentation and the key if any. */
static void
json_member(struct json_writer *w, const char *key)
{
	if (w->used[w->depth])
		fputc(',', w->f);
	fputc('\n', w->f);
	w->used[w->depth] = true;
	json_indent(w);
	if (key != NULL) {
		json_write_string(w->f, key);
		fputs(": ", w->f);
	}
}

static void
json_push(struct json_writer *w, char open)
{
	assert(w->depth < JSON_DEPTH_MAX);
	fputc(open, w->f);
	w->depth++;
	w->used[w->depth] = false;
}

static void
json_pop(struct json_writer *w, char close)
{
	bool had_members = w->used[w->depth];

	assert(w->depth > 0);
	w->depth--;
	if (had_members) {
		fputc('\n', w->f);
		json_indent(w);
	}
	fputc(close, w->f);
}

void
json_begin(struct json_writer *w, FILE *f)
{
	w->f = f;
	w->depth = 0;
	w->used[0] = false;
	json_push(w, '{');
}

void
json_end(struct json_writer *w)
{
	json_pop(w, '}');
	fputc('\n', w->f);
}

void
json_object_open(struct json_writer *w, const char *key)
{
	json_member(w, key);
	json_push(w, '{');
}

void
json_object_close(struct json_writer *w)
{
	json_pop(w, '}');
}

void
json_array_open(struct json_writer *w, const char *key)
{
	json_member(w, key);
	json_push(w, '[');
}

void
json_array_close(struct json_writer *w)
{
	json_pop(w, ']');
}

void
json_add_u64(struct json_writer *w, const char *key, uint64_t v)
{
	json_member(w, key);
	fprintf(w->f, "%" PRIu64, v);
}

void
json_add_double(struct json_writer *w, const char *key, double v)
{
	json_member(w, key);
	if (isfinite(v))
		fprintf(w->f, "%.3f", v);
	else
		fputs("null", w->f);
}

void
json_add_bool(struct json_writer *w, const char *key, bool v)
{
	json_member(w, key);
	fputs(v ? "true" : "false", w->f);
}

void
json_add_str(struct json_writer *w, const char *key, const char *s)
{
	json_member(w, key);
	json_write_string(w->f, s);
}

void
json_add_null(struct json_writer *w, const char *key)
{
	json_member(w, key);
	fputs("null", w->f);
}
