/*
 * test_histogram.c - Criterion suite for bench/histogram.c: percentiles of known synthetic
 * distributions must come out within the bucket precision, and the bookkeeping (min, max,
 * mean, clamping, merge, reset) must be exact.
 */
#include "../histogram.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#define PRECISION 10
/* Relative width of a bucket above 2^PRECISION: 2^(1-PRECISION). */
#define REL_ERR (2.0 / (double)(1u << PRECISION))

static void
assert_close(uint64_t got, double want, const char *what)
{
	double tol = want * REL_ERR + 1.0;

	cr_assert(fabs((double)got - want) <= tol, "%s: got %llu, want %.1f (tolerance %.2f)", what,
	          (unsigned long long)got, want, tol);
	/* The reported value is the highest equivalent one: never below the sample. */
	cr_assert((double)got + 1.0 >= want, "%s: %llu underestimates %.1f", what,
	          (unsigned long long)got, want);
}

Test(histogram, empty_reports_zero)
{
	struct histogram *h = histogram_new(1000000, PRECISION);

	cr_assert_not_null(h);
	cr_assert_eq(histogram_count(h), 0);
	cr_assert_eq(histogram_percentile(h, 50.0), 0);
	cr_assert_eq(histogram_percentile(h, 99.9), 0);
	cr_assert_eq(histogram_min(h), 0);
	cr_assert_eq(histogram_max(h), 0);
	cr_assert_float_eq(histogram_mean(h), 0.0, 1e-12);
	histogram_free(h);
	histogram_free(NULL);
}

Test(histogram, rejects_bad_shape)
{
	cr_assert_null(histogram_new(1000, 1));
	cr_assert_null(histogram_new(1000, 21));
	cr_assert_null(histogram_new(UINT64_MAX, 10));
}

Test(histogram, small_values_are_exact)
{
	struct histogram *h = histogram_new(1000000, PRECISION);
	uint64_t v;

	for (v = 0; v < 1024; v++)
		histogram_record(h, v);
	cr_assert_eq(histogram_count(h), 1024);
	/* rank ceil(0.5 * 1024) = 512 -> value 511 */
	cr_assert_eq(histogram_percentile(h, 50.0), 511);
	cr_assert_eq(histogram_percentile(h, 90.0), 921);  /* rank 922 */
	cr_assert_eq(histogram_percentile(h, 99.0), 1013); /* rank 1014 */
	cr_assert_eq(histogram_percentile(h, 100.0), 1023);
	cr_assert_eq(histogram_percentile(h, 0.0), 0);
	cr_assert_float_eq(histogram_mean(h), 511.5, 1e-9);
	histogram_free(h);
}

Test(histogram, uniform_distribution)
{
	struct histogram *h = histogram_new(3600ull * 1000000, PRECISION);
	uint64_t v;

	for (v = 1; v <= 1000000; v++)
		histogram_record(h, v);
	cr_assert_eq(histogram_count(h), 1000000);
	cr_assert_eq(histogram_min(h), 1);
	cr_assert_eq(histogram_max(h), 1000000);
	assert_close(histogram_percentile(h, 50.0), 500000, "p50");
	assert_close(histogram_percentile(h, 90.0), 900000, "p90");
	assert_close(histogram_percentile(h, 99.0), 990000, "p99");
	assert_close(histogram_percentile(h, 99.9), 999000, "p99.9");
	cr_assert_eq(histogram_percentile(h, 100.0), 1000000);
	cr_assert_float_eq(histogram_mean(h), 500000.5, 1e-6);
	histogram_free(h);
}

/*
 * An exponential distribution with a mean of 2 ms, sampled at its own quantiles: sample i
 * of n is F^-1((i + 0.5) / n), so the p-th percentile is known in closed form.
 */
Test(histogram, exponential_distribution)
{
	const double mean = 2000.0;
	const int n = 200000;
	const double pcts[] = { 50.0, 90.0, 99.0, 99.9 };
	struct histogram *h = histogram_new(60ull * 1000000, PRECISION);
	size_t k;
	int i;

	for (i = 0; i < n; i++)
		histogram_record(h, (uint64_t)llround(-mean * log(1.0 - (i + 0.5) / n)));
	for (k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
		double want = -mean * log(1.0 - pcts[k] / 100.0);
		uint64_t got = histogram_percentile(h, pcts[k]);

		/* One extra sample of slack: the rank sits between two quantile points. */
		cr_assert(fabs((double)got - want) <=
		                  want * REL_ERR + mean * 1.0 / (n * (1 - pcts[k] / 100)) + 1,
		          "p%.1f: got %llu, want %.1f", pcts[k], (unsigned long long)got, want);
	}
	histogram_free(h);
}

/* 99 % fast, 1 % slow: the tail percentiles must land on the slow mode exactly. */
Test(histogram, bimodal_tail)
{
	struct histogram *h = histogram_new(3600ull * 1000000, PRECISION);

	histogram_record_n(h, 250, 9900);
	histogram_record_n(h, 150000, 100);
	cr_assert_eq(histogram_percentile(h, 50.0), 250);
	cr_assert_eq(histogram_percentile(h, 99.0), 250);
	cr_assert_eq(histogram_percentile(h, 99.01), 150000);
	cr_assert_eq(histogram_percentile(h, 99.9), 150000);
	cr_assert_eq(histogram_max(h), 150000);
	histogram_free(h);
}

Test(histogram, bucket_bounds_hold_precision)
{
	struct histogram *h = histogram_new(UINT64_C(1) << 40, PRECISION);
	uint64_t x = 88172645463325252ull, lo, hi;
	int i;

	for (i = 0; i < 100000; i++) {
		uint64_t v;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x >> (24 + i % 40);
		histogram_bucket_bounds(h, v, &lo, &hi);
		cr_assert(lo <= v && v <= hi, "%llu not in [%llu, %llu]", (unsigned long long)v,
		          (unsigned long long)lo, (unsigned long long)hi);
		if (v < (1u << PRECISION))
			cr_assert_eq(lo, hi);
		else
			cr_assert((double)(hi - lo + 1) <= (double)lo * REL_ERR);
	}
	/* Bucket edges: 1024 starts the first width-2 bucket. */
	histogram_bucket_bounds(h, 1024, &lo, &hi);
	cr_assert(lo == 1024 && hi == 1025);
	histogram_bucket_bounds(h, 2047, &lo, &hi);
	cr_assert(lo == 2046 && hi == 2047);
	histogram_bucket_bounds(h, 2048, &lo, &hi);
	cr_assert(lo == 2048 && hi == 2051);
	histogram_free(h);
}

Test(histogram, clamps_above_highest)
{
	struct histogram *h = histogram_new(10000, PRECISION);

	histogram_record(h, 5);
	histogram_record(h, 50000);
	cr_assert_eq(histogram_count(h), 2);
	cr_assert_eq(histogram_clamped(h), 1);
	cr_assert_eq(histogram_max(h), 50000);
	cr_assert_eq(histogram_percentile(h, 50.0), 5);
	cr_assert_eq(histogram_percentile(h, 100.0), 50000);
	histogram_free(h);
}

Test(histogram, merge_equals_single_recording)
{
	struct histogram *a = histogram_new(1000000, PRECISION);
	struct histogram *b = histogram_new(1000000, PRECISION);
	struct histogram *all = histogram_new(1000000, PRECISION);
	struct histogram *other = histogram_new(1000000, 8);
	uint64_t v;

	for (v = 1; v <= 50000; v++) {
		histogram_record(v % 3 ? a : b, v * 7);
		histogram_record(all, v * 7);
	}
	cr_assert_eq(histogram_merge(a, b), 0);
	cr_assert_eq(histogram_count(a), histogram_count(all));
	cr_assert_eq(histogram_min(a), histogram_min(all));
	cr_assert_eq(histogram_max(a), histogram_max(all));
	cr_assert_eq(histogram_percentile(a, 50.0), histogram_percentile(all, 50.0));
	cr_assert_eq(histogram_percentile(a, 99.9), histogram_percentile(all, 99.9));
	cr_assert_eq(histogram_merge(a, other), -1);
	histogram_reset(a);
	cr_assert_eq(histogram_count(a), 0);
	cr_assert_eq(histogram_percentile(a, 50.0), 0);
	histogram_record(a, 42);
	cr_assert_eq(histogram_min(a), 42);
	cr_assert_eq(histogram_percentile(a, 50.0), 42);
	histogram_free(a);
	histogram_free(b);
	histogram_free(all);
	histogram_free(other);
}
