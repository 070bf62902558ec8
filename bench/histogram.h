/*
 * histogram.h - an HDR-style log-bucket histogram of unsigned integers (latencies in µs).
 *
 * Pure: no I/O, no clocks, no libevent; only malloc. Values below 2^precision_bits are
 * counted exactly. Above that, each power-of-two range is cut into 2^(precision_bits-1)
 * equal sub-buckets, so a bucket is never wider than 2^(1-precision_bits) of its lowest
 * value: with 10 bits, any percentile is within 0.2 % of the true sample value.
 *
 * Percentiles report the highest value equivalent to the bucket holding the sample of
 * that rank (never an underestimate), clamped to the exact minimum and maximum recorded.
 */
#ifndef PETREL_BENCH_HISTOGRAM_H
#define PETREL_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_PRECISION_MIN 2
#define HISTOGRAM_PRECISION_MAX 20

struct histogram;

/*
 * Returns a histogram for values 0..highest with the given precision (bits, between
 * HISTOGRAM_PRECISION_MIN and HISTOGRAM_PRECISION_MAX), or NULL with errno set (EINVAL,
 * ENOMEM). Values above highest are counted in the last bucket and in
 * histogram_clamped(); min and max stay exact. Free with histogram_free().
 */
struct histogram *histogram_new(uint64_t highest, unsigned precision_bits);

/* Frees h; histogram_free(NULL) is a no-op. */
void histogram_free(struct histogram *h);

/* Forgets every value; the shape (highest, precision) is kept. */
void histogram_reset(struct histogram *h);

/* Counts value once, or n times. */
void histogram_record(struct histogram *h, uint64_t value);
void histogram_record_n(struct histogram *h, uint64_t value, uint64_t n);

/* Adds every count of src into dst. Returns 0, or -1 (errno EINVAL) if shapes differ. */
int histogram_merge(struct histogram *dst, const struct histogram *src);

uint64_t histogram_count(const struct histogram *h);
uint64_t histogram_min(const struct histogram *h); /* 0 when empty */
uint64_t histogram_max(const struct histogram *h); /* 0 when empty */
double histogram_mean(const struct histogram *h);  /* exact; 0 when empty */
uint64_t histogram_clamped(const struct histogram *h);

/*
 * The value at percentile pct (0..100): the sample of rank ceil(pct/100 * count), at
 * least rank 1, reported as its bucket's highest equivalent value clamped to [min, max].
 * Returns 0 when the histogram is empty.
 */
uint64_t histogram_percentile(const struct histogram *h, double pct);

/* The bucket bounds [*lowest, *highest] that value falls in (for tests and reports). */
void histogram_bucket_bounds(const struct histogram *h, uint64_t value, uint64_t *lowest,
                             uint64_t *highest);

#endif /* PETREL_BENCH_HISTOGRAM_H */
