/*
 * petrel-bench.c - entry point of petrel-bench, petrel's bundled SMTP load tool: picks
 * the subcommand and hands it the rest of the command line.
 *
 *   send  many concurrent SMTP client sessions against a server (send.c)
 *   sink  a fast SMTP server that accepts, counts and checks everything (sink.c)
 *   idle  many idle connections, and the server's memory per connection (idle.c)
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

#ifndef PETREL_VERSION
#define PETREL_VERSION "dev"
#endif

static const struct {
	const char *name;                   /* argv[1] */
	int (*main)(int argc, char **argv); /* gets argv + 1 */
	const char *summary;                /* one line for --help */
} bench_commands[] = {
	{ "send", send_main, "run concurrent SMTP client sessions and measure rates and latency" },
	{ "sink", sink_main, "accept, count and check messages as fast as possible" },
	{ "idle", idle_main, "hold many idle connections; measure server memory per connection" },
};

static void
bench_usage(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: petrel-bench COMMAND [options]\n\nCommands:\n");
	for (i = 0; i < sizeof(bench_commands) / sizeof(bench_commands[0]); i++)
		fprintf(f, "  %-6s %s\n", bench_commands[i].name, bench_commands[i].summary);
	fprintf(f, "\nRun 'petrel-bench COMMAND --help' for the options of a command.\n"
	           "Exit status: 0 success, 1 run failed (errors, check failures), 2 bad usage.\n");
}

int
main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		bench_usage(stderr);
		return BENCH_EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		bench_usage(stdout);
		return BENCH_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("petrel-bench %s\n", PETREL_VERSION);
		return BENCH_EXIT_OK;
	}
	for (i = 0; i < sizeof(bench_commands) / sizeof(bench_commands[0]); i++) {
		if (strcmp(argv[1], bench_commands[i].name) == 0) {
			/* getopt messages then read "petrel-bench send: unrecognized option". */
			char prog[32];

			snprintf(prog, sizeof(prog), "petrel-bench %s", bench_commands[i].name);
			argv[1] = prog;
			return bench_commands[i].main(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "petrel-bench: unknown command '%s'\n", argv[1]);
	bench_usage(stderr);
	return BENCH_EXIT_USAGE;
}
