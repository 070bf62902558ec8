/*
 * json.h - a small streaming JSON writer for petrel-bench reports.
 *
 * Writes straight to a FILE with two-space indentation and keeps only the comma state
 * per nesting level. Keys are borrowed literals; string values are escaped (bytes above
 * 0x7e as \u00XX, so server text never makes the file invalid UTF-8). Non-finite
 * doubles are written as null. Nesting deeper than JSON_DEPTH_MAX is a programming error.
 */
#ifndef PETREL_BENCH_JSON_H
#define PETREL_BENCH_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH_MAX 16

struct json_writer {
	FILE *f;                       /* borrowed output */
	int depth;                     /* current nesting level */
	bool used[JSON_DEPTH_MAX + 1]; /* whether the level already holds a member */
};

/* Starts the top-level object on f. */
void json_begin(struct json_writer *w, FILE *f);
/* Closes the top-level object and ends the line. */
void json_end(struct json_writer *w);

/* Open and close a nested object or array. key is NULL inside an array. */
void json_object_open(struct json_writer *w, const char *key);
void json_object_close(struct json_writer *w);
void json_array_open(struct json_writer *w, const char *key);
void json_array_close(struct json_writer *w);

/* Members (key NULL inside an array). */
void json_add_u64(struct json_writer *w, const char *key, uint64_t v);
void json_add_double(struct json_writer *w, const char *key, double v);
void json_add_bool(struct json_writer *w, const char *key, bool v);
void json_add_str(struct json_writer *w, const char *key, const char *s);
void json_add_null(struct json_writer *w, const char *key);

#endif /* PETREL_BENCH_JSON_H */
