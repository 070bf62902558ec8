/*
 * report.c - turns latency histograms into summary-table rows and JSON objects, so every
 * subcommand prints the same columns (count, mean, p50, p90, p99, p99.9, max).
 *
 * Histograms hold µs; tables print ms with three decimals; JSON keeps µs integers.
 */
#include "bench.h"
#include "histogram.h"

#include <inttypes.h>
#include <stdio.h>

void
bench_report_latency_header(FILE *f)
{
	fprintf(f, "%-22s %9s %9s %9s %9s %9s %9s %9s\n", "latency (ms)", "count", "mean", "p50",
	        "p90", "p99", "p99.9", "max");
}

void
bench_report_latency_row(FILE *f, const char *name, const struct histogram *h)
{
	if (histogram_count(h) == 0) {
		fprintf(f, "  %-20s %9d %9s %9s %9s %9s %9s %9s\n", name, 0, "-", "-", "-", "-",
		        "-", "-");
		return;
	}
	fprintf(f, "  %-20s %9" PRIu64 " %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name,
	        histogram_count(h), histogram_mean(h) / 1000.0,
	        (double)histogram_percentile(h, 50.0) / 1000.0,
	        (double)histogram_percentile(h, 90.0) / 1000.0,
	        (double)histogram_percentile(h, 99.0) / 1000.0,
	        (double)histogram_percentile(h, 99.9) / 1000.0, (double)histogram_max(h) / 1000.0);
}

void
bench_report_latency_json(struct json_writer *w, const char *key, const struct histogram *h)
{
	json_object_open(w, key);
	json_add_u64(w, "count", histogram_count(h));
	json_add_u64(w, "min", histogram_min(h));
	json_add_double(w, "mean", histogram_mean(h));
	json_add_u64(w, "p50", histogram_percentile(h, 50.0));
	json_add_u64(w, "p90", histogram_percentile(h, 90.0));
	json_add_u64(w, "p99", histogram_percentile(h, 99.0));
	json_add_u64(w, "p99_9", histogram_percentile(h, 99.9));
	json_add_u64(w, "max", histogram_max(h));
	json_object_close(w);
}

const char *
bench_format_rate_bytes(double bytes_per_s, char *buf, size_t len)
{
	if (bytes_per_s >= 1024.0 * 1024.0)
		snprintf(buf, len, "%.1f MiB/s", bytes_per_s / (1024.0 * 1024.0));
	else if (bytes_per_s >= 1024.0)
		snprintf(buf, len, "%.1f KiB/s", bytes_per_s / 1024.0);
	else
		snprintf(buf, len, "%.0f B/s", bytes_per_s);
	return buf;
}
