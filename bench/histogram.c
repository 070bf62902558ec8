/*
 * histogram.c - HDR-style log-bucket histogram (see histogram.h for the guarantees).
 *
 * Layout, with S = precision bits, SUB = 2^S and HALF = 2^(S-1):
 *   indexes 0 .. SUB-1 count the values 0 .. SUB-1 exactly (width 1);
 *   then for every shift k >= 1, HALF buckets of width 2^k cover [2^(S-1+k), 2^(S+k)).
 * A value v >= SUB with its top bit at position m has shift k = m - S + 1 and lands in
 * index SUB + (k - 1) * HALF + ((v >> k) - HALF). Recording is a bit scan and a shift.
 */
#include "histogram.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct histogram {
	uint64_t highest;   /* values above are clamped into the last bucket */
	unsigned precision; /* S: bits of exact resolution */
	uint64_t sub_count; /* 2^S */
	uint64_t half;      /* 2^(S-1) */
	size_t nbuckets;    /* length of counts[] */
	uint64_t total;     /* number of recorded values */
	uint64_t clamped;   /* how many were above highest */
	uint64_t min;       /* exact smallest value (valid when total > 0) */
	uint64_t max;       /* exact largest value (valid when total > 0) */
	long double sum;    /* exact enough for the mean over any realistic run */
	uint64_t *counts;   /* one counter per bucket */
};

static size_t
histogram_index(const struct histogram *h, uint64_t v)
{
	unsigned top, shift;

	if (v < h->sub_count)
		return (size_t)v;
	top = 63u - (unsigned)__builtin_clzll(v);
	shift = top - h->precision + 1;
	return (size_t)(h->sub_count + (uint64_t)(shift - 1) * h->half + ((v >> shift) - h->half));
}

static void
histogram_index_bounds(const struct histogram *h, size_t idx, uint64_t *lowest, uint64_t *highest)
{
	uint64_t k, shift, sub;

	if (idx < h->sub_count) {
		*lowest = *highest = idx;
		return;
	}
	k = idx - h->sub_count;
	shift = k / h->half + 1;
	sub = k % h->half + h->half;
	*lowest = sub << shift;
	*highest = *lowest + ((uint64_t)1 << shift) - 1;
}

struct histogram *
histogram_new(uint64_t highest, unsigned precision_bits)
{
	struct histogram *h = NULL;

	if (precision_bits < HISTOGRAM_PRECISION_MIN || precision_bits > HISTOGRAM_PRECISION_MAX ||
	    highest >= ((uint64_t)1 << 62)) {
		errno = EINVAL;
		goto fail;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		goto fail;
	h->highest = highest;
	h->precision = precision_bits;
	h->sub_count = (uint64_t)1 << precision_bits;
	h->half = h->sub_count / 2;
	h->nbuckets = histogram_index(h, highest) + 1;
	h->counts = calloc(h->nbuckets, sizeof(*h->counts));
	if (h->counts == NULL)
		goto fail;
	return h;
fail:
	histogram_free(h);
	return NULL;
}

void
histogram_free(struct histogram *h)
{
	if (h == NULL)
		return;
	free(h->counts);
	free(h);
}

void
histogram_reset(struct histogram *h)
{
	memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
	h->total = 0;
	h->clamped = 0;
	h->min = 0;
	h->max = 0;
	h->sum = 0;
}

void
histogram_record_n(struct histogram *h, uint64_t value, uint64_t n)
{
	size_t idx;

	if (n == 0)
		return;
	if (h->total == 0 || value < h->min)
		h->min = value;
	if (h->total == 0 || value > h->max)
		h->max = value;
	if (value > h->highest) {
		h->clamped += n;
		idx = h->nbuckets - 1;
	} else {
		idx = histogram_index(h, value);
	}
	h->counts[idx] += n;
	h->total += n;
	h->sum += (long double)value * (long double)n;
}

void
histogram_record(struct histogram *h, uint64_t value)
{
	histogram_record_n(h, value, 1);
}

int
histogram_merge(struct histogram *dst, const struct histogram *src)
{
	size_t i;

	if (dst->precision != src->precision || dst->nbuckets != src->nbuckets) {
		errno = EINVAL;
		return -1;
	}
	if (src->total == 0)
		return 0;
	for (i = 0; i < dst->nbuckets; i++)
		dst->counts[i] += src->counts[i];
	if (dst->total == 0 || src->min < dst->min)
		dst->min = src->min;
	if (dst->total == 0 || src->max > dst->max)
		dst->max = src->max;
	dst->total += src->total;
	dst->clamped += src->clamped;
	dst->sum += src->sum;
	return 0;
}

uint64_t
histogram_count(const struct histogram *h)
{
	return h->total;
}

uint64_t
histogram_min(const struct histogram *h)
{
	return h->total ? h->min : 0;
}

uint64_t
histogram_max(const struct histogram *h)
{
	return h->total ? h->max : 0;
}

double
histogram_mean(const struct histogram *h)
{
	return h->total ? (double)(h->sum / (long double)h->total) : 0.0;
}

uint64_t
histogram_clamped(const struct histogram *h)
{
	return h->clamped;
}

uint64_t
histogram_percentile(const struct histogram *h, double pct)
{
	uint64_t rank, seen = 0, lowest, highest;
	double r;
	size_t i;

	if (h->total == 0)
		return 0;
	if (!(pct > 0.0))
		return h->min;
	if (pct >= 100.0)
		return h->max;
	/* ceil(), forgiving the rounding of pct/100 (99.9/100 * 1000 must be rank 999). */
	r = pct / 100.0 * (double)h->total;
	r -= r * 1e-12;
	rank = (uint64_t)ceil(r);
	if (rank < 1)
		rank = 1;
	if (rank > h->total)
		rank = h->total;
	for (i = 0; i < h->nbuckets; i++) {
		seen += h->counts[i];
		if (seen >= rank)
			break;
	}
	histogram_index_bounds(h, i, &lowest, &highest);
	if (highest > h->max)
		highest = h->max;
	if (highest < h->min)
		highest = h->min;
	return highest;
}

void
histogram_bucket_bounds(const struct histogram *h, uint64_t value, uint64_t *lowest,
                        uint64_t *highest)
{
	size_t idx = value > h->highest ? h->nbuckets - 1 : histogram_index(h, value);

	histogram_index_bounds(h, idx, lowest, highest);
}
