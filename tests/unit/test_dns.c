/*
 * test_dns.c: dns.c against a private dnsmasq on 127.0.0.1 (a free port, started and killed by
 * every test's fixture): MX order and shuffle, implicit and null MX, NXDOMAIN, hosts without
 * addresses, IPv6, the address caps and dedupe, dns_resolve_host, tempfail (REFUSED, and a
 * silent server with a short timeout), cancellation and dns_free() with requests in flight.
 *
 * dnsmasq is required (scripts/deps --test installs it): without it every test fails.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "petrel/dns.h"
#include "petrel/log.h"

#define DNSMASQ_DEFAULT "/usr/sbin/dnsmasq"
#define WAIT_MS         5000

static struct event_base *base;
static struct dns *d;
static pid_t dnsmasq_pid = -1;
static int dnsmasq_port;
static int dnsmasq_log = -1; /* dnsmasq's stdout and stderr: an unlinked temporary file */
static char servers[64];

/* The zone every test sees; names under .test that are not listed are NXDOMAIN (--local). */
static const char *const zone[] = {
	"--local=/test/",
	/* listed out of order on purpose */
	"--mx-host=multi.test,mx3.multi.test,30",
	"--mx-host=multi.test,mx1.multi.test,10",
	"--mx-host=multi.test,mx2.multi.test,20",
	"--host-record=mx1.multi.test,127.0.0.11",
	"--host-record=mx2.multi.test,127.0.0.12,::12",
	"--host-record=mx3.multi.test,127.0.0.13",
	"--mx-host=equal.test,a.equal.test,10",
	"--mx-host=equal.test,b.equal.test,10",
	"--mx-host=equal.test,c.equal.test,5",
	"--host-record=a.equal.test,127.0.0.21",
	"--host-record=b.equal.test,127.0.0.22",
	"--host-record=c.equal.test,127.0.0.23",
	"--host-record=implicit.test,127.0.0.30",
	"--txt-record=empty.test,nothing here",
	"--mx-host=nullmx.test,.,0",
	"--mx-host=partial.test,gone.partial.test,5",
	"--mx-host=partial.test,good.partial.test,10",
	"--host-record=good.partial.test,127.0.0.40",
	"--mx-host=noaddr.test,gone1.noaddr.test,10",
	"--mx-host=noaddr.test,gone2.noaddr.test,20",
	"--mx-host=mixfail.test,gone.mixfail.test,10",
	"--mx-host=mixfail.test,host.elsewhere.example,20",
	"--mx-host=v6.test,mx.v6.test,10",
	"--mx-host=v6.test,v6only.test,20",
	"--host-record=mx.v6.test,127.0.0.50,::50",
	"--host-record=v6only.test,::51",
	"--mx-host=dup.test,a.dup.test,10",
	"--mx-host=dup.test,b.dup.test,20",
	"--mx-host=dup.test,c.dup.test,30",
	"--host-record=a.dup.test,127.0.0.70",
	"--host-record=b.dup.test,127.0.0.70",
	"--host-record=b.dup.test,127.0.0.71",
	"--host-record=c.dup.test,127.0.0.71",
};

#define MANY     12 /* many.test: m01 … m12, preferences 1 … 12 */
#define BIG      40 /* big.test: 40 long MX names, too many for 512 octets: c-ares retries on TCP */
#define BIG_NAME "an-exchanger-with-a-rather-long-label-%02d.big.test"

/* ---- dnsmasq ---- */

static const char *
dnsmasq_path(void)
{
	const char *p = getenv("DNSMASQ");

	return p != NULL && *p != '\0' ? p : DNSMASQ_DEFAULT;
}

/* A port free for both UDP and TCP on 127.0.0.1 (free now: dnsmasq takes it right after). */
static int
pick_port(void)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		socklen_t len = sizeof(sin);
		int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
		int port = -1;

		cr_assert(u >= 0 && t >= 0);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    getsockname(u, (struct sockaddr *)&sin, &len) == 0 &&
		    bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			port = ntohs(sin.sin_port);
		close(u);
		close(t);
		if (port > 0)
			return port;
	}
	cr_assert_fail("no free port on 127.0.0.1");
	return -1;
}

static void
print_dnsmasq_log(void)
{
	char buf[4096];
	ssize_t n = pread(dnsmasq_log, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "--- dnsmasq log ---\n%s--- end ---\n", buf);
}

static void
dnsmasq_stop(void)
{
	if (dnsmasq_pid > 0) {
		kill(dnsmasq_pid, SIGKILL);
		waitpid(dnsmasq_pid, NULL, 0);
		dnsmasq_pid = -1;
	}
	if (dnsmasq_log >= 0) {
		close(dnsmasq_log);
		dnsmasq_log = -1;
	}
}

static pid_t
dnsmasq_spawn(int port, int logfd)
{
	static char args[128][160];
	char *argv[sizeof(zone) / sizeof(zone[0]) + 2 * MANY + BIG + DNS_MAX_HOSTS + 24];
	struct passwd *pw = getpwuid(geteuid());
	struct group *gr = getgrgid(getegid());
	pid_t parent = getpid(), pid;
	size_t n = 0, a = 0;

	cr_assert(pw != NULL && gr != NULL);
	argv[n++] = (char *)dnsmasq_path();
	argv[n++] = "--keep-in-foreground";
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--pid-file=";
	argv[n++] = "--log-facility=-";
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	/* Same user and group: no credential change, so PR_SET_PDEATHSIG survives. */
	snprintf(args[a], sizeof(args[a]), "--user=%s", pw->pw_name);
	argv[n++] = args[a++];
	snprintf(args[a], sizeof(args[a]), "--group=%s", gr->gr_name);
	argv[n++] = args[a++];
	snprintf(args[a], sizeof(args[a]), "--port=%d", port);
	argv[n++] = args[a++];
	for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++)
		argv[n++] = (char *)zone[i];
	for (int i = 1; i <= MANY; i++) {
		snprintf(args[a], sizeof(args[a]), "--mx-host=many.test,m%02d.many.test,%d", i, i);
		argv[n++] = args[a++];
		snprintf(args[a], sizeof(args[a]), "--host-record=m%02d.many.test,127.0.1.%d", i,
		         i);
		argv[n++] = args[a++];
	}
	for (int i = 1; i <= BIG; i++) {
		char name[64];

		snprintf(name, sizeof(name), BIG_NAME, i);
		snprintf(args[a], sizeof(args[a]), "--mx-host=big.test,%s,%d", name, i);
		argv[n++] = args[a++];
		if (i <= DNS_MAX_HOSTS) {
			snprintf(args[a], sizeof(args[a]), "--host-record=%s,127.0.2.%d", name, i);
			argv[n++] = args[a++];
		}
	}
	argv[n] = NULL;
	cr_assert(n < sizeof(argv) / sizeof(argv[0]) && a <= 128);

	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* If the test process dies without its .fini (a crash), dnsmasq goes with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Started when it answers on TCP; false if it exited first (a port race: try another). */
static bool
dnsmasq_wait_ready(pid_t pid, int port)
{
	struct timespec nap = { 0, 10 * 1000 * 1000 };

	for (int i = 0; i < 500; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
		int s = socket(AF_INET, SOCK_STREAM, 0), rc;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		rc = connect(s, (struct sockaddr *)&sin, sizeof(sin));
		close(s);
		if (rc == 0)
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		nanosleep(&nap, NULL);
	}
	return false;
}

static void
dnsmasq_start(void)
{
	char path[] = "/tmp/petrel-test-dns-XXXXXX";

	if (access(dnsmasq_path(), X_OK) != 0)
		cr_assert_fail("%s not found (%s): install it with scripts/deps --test",
		               dnsmasq_path(), strerror(errno));
	/* Unlinked at once, so a test that crashes leaves no file behind. */
	dnsmasq_log = mkostemp(path, O_CLOEXEC);
	cr_assert(dnsmasq_log >= 0);
	unlink(path);
	for (int attempt = 0; attempt < 5; attempt++) {
		int port = pick_port();
		pid_t pid = dnsmasq_spawn(port, dnsmasq_log);

		if (dnsmasq_wait_ready(pid, port)) {
			dnsmasq_pid = pid;
			dnsmasq_port = port;
			snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
			return;
		}
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	print_dnsmasq_log();
	cr_assert_fail("dnsmasq did not start");
}

/* ---- fixture and helpers ---- */

static void
setup(void)
{
	char *err = NULL;

	base = event_base_new();
	cr_assert_not_null(base);
	dnsmasq_start();
	d = dns_new(base, servers, &err);
	cr_assert_not_null(d, "dns_new: %s", err ? err : "?");
	cr_assert_eq(dns_set_timeout(d, 2000, 2), 0);
	dns_set_seed(d, 1);
}

static void
teardown(void)
{
	dns_free(d);
	d = NULL;
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	dnsmasq_stop();
}

TestSuite(dns, .init = setup, .fini = teardown, .timeout = 30);

struct answer {
	int calls;
	enum dns_status status;
	size_t nhosts;
	char names[DNS_MAX_HOSTS][256];
	unsigned prefs[DNS_MAX_HOSTS];
	char addrs[DNS_MAX_HOSTS][512]; /* "a b c" per host */
	char error[128];
	bool free_dns;          /* the callback calls dns_free(d) */
	struct dns_req *cancel; /* the callback cancels this one */
};

static bool inside_resolve;

static void
on_result(void *arg, const struct dns_result *res)
{
	struct answer *ans = arg;

	cr_assert_not(inside_resolve, "callback ran inside dns_resolve_*()");
	ans->calls++;
	ans->status = res->status;
	ans->nhosts = res->nhosts;
	snprintf(ans->error, sizeof(ans->error), "%s", res->error);
	cr_assert_leq(res->nhosts, DNS_MAX_HOSTS);
	for (size_t i = 0; i < res->nhosts; i++) {
		const struct dns_host *h = &res->hosts[i];
		size_t off = 0;

		snprintf(ans->names[i], sizeof(ans->names[i]), "%s", h->name);
		ans->prefs[i] = h->preference;
		ans->addrs[i][0] = '\0';
		cr_assert_gt(h->naddrs, 0);
		for (size_t j = 0; j < h->naddrs; j++) {
			char buf[INET6_ADDRSTRLEN];
			const struct sockaddr_storage *ss = &h->addrs[j];

			if (ss->ss_family == AF_INET) {
				cr_assert_eq(((const struct sockaddr_in *)ss)->sin_port, 0);
				inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf,
				          sizeof(buf));
			} else {
				cr_assert_eq(ss->ss_family, AF_INET6);
				cr_assert_eq(((const struct sockaddr_in6 *)ss)->sin6_port, 0);
				inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
				          buf, sizeof(buf));
			}
			off += (size_t)snprintf(ans->addrs[i] + off, sizeof(ans->addrs[i]) - off,
			                        "%s%s", j ? " " : "", buf);
		}
	}
	if (ans->cancel != NULL) {
		dns_cancel(ans->cancel);
		ans->cancel = NULL;
	}
	if (ans->free_dns) {
		dns_free(d);
		d = NULL;
	}
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Run the loop until *calls reaches n or ms pass; returns whether it got there. */
static bool
run_until(const int *calls, int n, int ms)
{
	bool expired = false;
	struct event *guard = evtimer_new(base, on_deadline, &expired);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	cr_assert_not_null(guard);
	evtimer_add(guard, &tv);
	while (*calls < n && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	return *calls >= n;
}

/* Run the loop for `ms`, whatever happens. */
static void
run_for(int ms)
{
	int never = 0;

	run_until(&never, 1, ms);
}

static struct dns_req *
resolve_mx(const char *domain, struct answer *ans)
{
	struct dns_req *req;

	inside_resolve = true;
	req = dns_resolve_mx(d, domain, on_result, ans);
	inside_resolve = false;
	cr_assert_not_null(req);
	return req;
}

static struct dns_req *
resolve_host(const char *host, struct answer *ans)
{
	struct dns_req *req;

	inside_resolve = true;
	req = dns_resolve_host(d, host, on_result, ans);
	inside_resolve = false;
	cr_assert_not_null(req);
	return req;
}

static void
mx(const char *domain, struct answer *ans)
{
	resolve_mx(domain, ans);
	cr_assert(run_until(&ans->calls, 1, WAIT_MS), "no answer for %s", domain);
	run_for(20); /* exactly once */
	cr_assert_eq(ans->calls, 1);
}

/* ---- MX ---- */

Test(dns, mx_sorted_by_preference)
{
	struct answer ans = { 0 };

	mx("multi.test", &ans);
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 3);
	cr_assert_str_eq(ans.names[0], "mx1.multi.test");
	cr_assert_str_eq(ans.names[1], "mx2.multi.test");
	cr_assert_str_eq(ans.names[2], "mx3.multi.test");
	cr_assert_eq(ans.prefs[0], 10);
	cr_assert_eq(ans.prefs[1], 20);
	cr_assert_eq(ans.prefs[2], 30);
	cr_assert_str_eq(ans.addrs[0], "127.0.0.11");
	cr_assert_str_eq(ans.addrs[1], "::12 127.0.0.12"); /* IPv6 first */
	cr_assert_str_eq(ans.addrs[2], "127.0.0.13");
}

Test(dns, mx_equal_preference_shuffled_by_seed)
{
	bool seen_ab = false, seen_ba = false;
	char first[2][256];

	for (unsigned seed = 0; seed < 32; seed++) {
		struct answer ans = { 0 };

		dns_set_seed(d, seed);
		mx("equal.test", &ans);
		cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
		cr_assert_eq(ans.nhosts, 3);
		cr_assert_str_eq(ans.names[0], "c.equal.test"); /* preference 5 always first */
		cr_assert_eq(ans.prefs[1], 10);
		cr_assert_eq(ans.prefs[2], 10);
		if (strcmp(ans.names[1], "a.equal.test") == 0) {
			cr_assert_str_eq(ans.names[2], "b.equal.test");
			seen_ab = true;
		} else {
			cr_assert_str_eq(ans.names[1], "b.equal.test");
			cr_assert_str_eq(ans.names[2], "a.equal.test");
			seen_ba = true;
		}
		if (seed == 7)
			snprintf(first[0], sizeof(first[0]), "%s", ans.names[1]);
	}
	cr_assert(seen_ab && seen_ba, "both orders over 32 seeds");

	/* The same seed gives the same order. */
	for (int i = 0; i < 2; i++) {
		struct answer ans = { 0 };

		dns_set_seed(d, 7);
		mx("equal.test", &ans);
		snprintf(first[1], sizeof(first[1]), "%s", ans.names[1]);
		cr_assert_str_eq(first[0], first[1]);
	}
}

Test(dns, mx_implicit_when_no_mx)
{
	struct answer ans = { 0 };

	mx("IMPLICIT.Test.", &ans); /* lower-cased, trailing dot removed */
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 1);
	cr_assert_str_eq(ans.names[0], "implicit.test");
	cr_assert_eq(ans.prefs[0], 0);
	cr_assert_str_eq(ans.addrs[0], "127.0.0.30");
}

Test(dns, mx_implicit_without_address_is_no_address)
{
	struct answer ans = { 0 };

	mx("empty.test", &ans);
	cr_assert_eq(ans.status, DNS_NO_ADDRESS, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 0);
	cr_assert_neq(ans.error[0], '\0');
}

Test(dns, mx_null)
{
	struct answer ans = { 0 };

	mx("nullmx.test", &ans);
	cr_assert_eq(ans.status, DNS_NULL_MX, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 0);
	cr_assert_neq(ans.error[0], '\0');
}

Test(dns, mx_nxdomain)
{
	struct answer ans = { 0 };

	log_set_level(LOG_LEVEL_DEBUG); /* the debug line escapes the name */
	mx("nowhere.test", &ans);
	cr_assert_eq(ans.status, DNS_NXDOMAIN, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 0);
	cr_assert(strstr(ans.error, "nowhere.test") != NULL, "%s", ans.error);
}

Test(dns, mx_invalid_name_answered_later)
{
	struct answer a = { 0 }, b = { 0 }, c = { 0 };

	resolve_mx("", &a);
	resolve_mx("bad..test", &b);
	resolve_mx("sp ace.test", &c);
	cr_assert_eq(a.calls + b.calls + c.calls, 0);
	cr_assert(run_until(&c.calls, 1, WAIT_MS));
	cr_assert_eq(a.status, DNS_NXDOMAIN);
	cr_assert_eq(b.status, DNS_NXDOMAIN);
	cr_assert_eq(c.status, DNS_NXDOMAIN);
}

Test(dns, mx_host_without_address_dropped)
{
	struct answer ans = { 0 };

	mx("partial.test", &ans);
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 1);
	cr_assert_str_eq(ans.names[0], "good.partial.test");
	cr_assert_eq(ans.prefs[0], 10);
	cr_assert_str_eq(ans.addrs[0], "127.0.0.40");
}

Test(dns, mx_no_host_has_address)
{
	struct answer ans = { 0 };

	mx("noaddr.test", &ans);
	cr_assert_eq(ans.status, DNS_NO_ADDRESS, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 0);
}

Test(dns, mx_no_address_but_one_lookup_failed_is_tempfail)
{
	struct answer ans = { 0 };

	/* gone.mixfail.test: NXDOMAIN; host.elsewhere.example: REFUSED (dnsmasq has no upstream) */
	mx("mixfail.test", &ans);
	cr_assert_eq(ans.status, DNS_TEMPFAIL, "%s", ans.error);
	cr_assert(strstr(ans.error, "host.elsewhere.example") != NULL, "%s", ans.error);
}

Test(dns, mx_ipv6_addresses)
{
	struct answer ans = { 0 };

	mx("v6.test", &ans);
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 2);
	cr_assert_str_eq(ans.names[0], "mx.v6.test");
	cr_assert_str_eq(ans.addrs[0], "::50 127.0.0.50");
	cr_assert_str_eq(ans.names[1], "v6only.test");
	cr_assert_str_eq(ans.addrs[1], "::51");
}

Test(dns, mx_addresses_deduplicated)
{
	struct answer ans = { 0 };

	/* a: .70; b: .70 .71; c: .71 → a [.70], b [.71], c left out */
	mx("dup.test", &ans);
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 2);
	cr_assert_str_eq(ans.names[0], "a.dup.test");
	cr_assert_str_eq(ans.addrs[0], "127.0.0.70");
	cr_assert_str_eq(ans.names[1], "b.dup.test");
	cr_assert_str_eq(ans.addrs[1], "127.0.0.71");
}

Test(dns, mx_at_most_ten_hosts)
{
	struct answer ans = { 0 };

	mx("many.test", &ans);
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, DNS_MAX_HOSTS);
	for (size_t i = 0; i < DNS_MAX_HOSTS; i++) {
		char name[32], addr[32];

		snprintf(name, sizeof(name), "m%02zu.many.test", i + 1);
		snprintf(addr, sizeof(addr), "127.0.1.%zu", i + 1);
		cr_assert_str_eq(ans.names[i], name);
		cr_assert_eq(ans.prefs[i], i + 1);
		cr_assert_str_eq(ans.addrs[i], addr);
	}
}

Test(dns, mx_large_answer_over_tcp)
{
	struct answer ans = { 0 };

	mx("big.test", &ans);
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, DNS_MAX_HOSTS);
	for (size_t i = 0; i < DNS_MAX_HOSTS; i++) {
		char name[96], addr[32];

		snprintf(name, sizeof(name), BIG_NAME, (int)i + 1);
		snprintf(addr, sizeof(addr), "127.0.2.%zu", i + 1);
		cr_assert_str_eq(ans.names[i], name);
		cr_assert_str_eq(ans.addrs[i], addr);
	}
}

Test(dns, mx_refused_is_tempfail)
{
	struct answer ans = { 0 };

	mx("elsewhere.example", &ans); /* not local, and dnsmasq has no upstream: REFUSED */
	cr_assert_eq(ans.status, DNS_TEMPFAIL, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 0);
}

Test(dns, mx_timeout_is_tempfail)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct answer ans = { 0 };
	char list[64], *err = NULL;
	int silent = socket(AF_INET, SOCK_DGRAM, 0);

	/* A bound UDP socket that never reads: queries vanish, no ICMP error comes back. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(silent >= 0);
	cr_assert_eq(bind(silent, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(silent, (struct sockaddr *)&sin, &len), 0);
	snprintf(list, sizeof(list), "127.0.0.1:%d", ntohs(sin.sin_port));
	dns_free(d);
	d = dns_new(base, list, &err);
	cr_assert_not_null(d, "%s", err ? err : "?");
	cr_assert_eq(dns_set_timeout(d, 150, 2), 0); /* 150 + 300 ms */

	mx("multi.test", &ans);
	cr_assert_eq(ans.status, DNS_TEMPFAIL, "%s", ans.error);
	cr_assert(strstr(ans.error, "multi.test") != NULL, "%s", ans.error);
	close(silent);
}

/* ---- dns_resolve_host ---- */

Test(dns, host_addresses)
{
	struct answer ans = { 0 };

	resolve_host("MX2.multi.test.", &ans);
	cr_assert(run_until(&ans.calls, 1, WAIT_MS));
	cr_assert_eq(ans.status, DNS_OK, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 1);
	cr_assert_str_eq(ans.names[0], "mx2.multi.test");
	cr_assert_eq(ans.prefs[0], 0);
	cr_assert_str_eq(ans.addrs[0], "::12 127.0.0.12");
}

Test(dns, host_ignores_mx)
{
	struct answer ans = { 0 };

	resolve_host("multi.test", &ans); /* has MX records but no address */
	cr_assert(run_until(&ans.calls, 1, WAIT_MS));
	cr_assert_eq(ans.status, DNS_NO_ADDRESS, "%s", ans.error);
}

Test(dns, host_nxdomain)
{
	struct answer ans = { 0 };

	resolve_host("nothere.test", &ans);
	cr_assert(run_until(&ans.calls, 1, WAIT_MS));
	cr_assert_eq(ans.status, DNS_NXDOMAIN, "%s", ans.error);
	cr_assert_eq(ans.nhosts, 0);
}

Test(dns, host_refused_is_tempfail)
{
	struct answer ans = { 0 };

	resolve_host("relay.elsewhere.example", &ans);
	cr_assert(run_until(&ans.calls, 1, WAIT_MS));
	cr_assert_eq(ans.status, DNS_TEMPFAIL, "%s", ans.error);
}

/* ---- cancellation and teardown ---- */

Test(dns, cancel_before_answer)
{
	struct answer a = { 0 }, b = { 0 };

	dns_cancel(resolve_mx("multi.test", &a));
	resolve_mx("implicit.test", &b); /* proves the loop ran long enough */
	cr_assert(run_until(&b.calls, 1, WAIT_MS));
	run_for(200);
	cr_assert_eq(a.calls, 0);
	cr_assert_eq(b.status, DNS_OK);
	dns_cancel(NULL);
}

Test(dns, cancel_after_mx_answer)
{
	struct answer a = { 0 }, b = { 0 };
	struct dns_req *req;

	/* b's MX answer comes in with a's; a's callback cancels b, pending or already done. */
	resolve_mx("multi.test", &a);
	req = resolve_mx("multi.test", &b);
	a.cancel = req;
	cr_assert(run_until(&a.calls, 1, WAIT_MS));
	run_for(200);
	cr_assert_eq(b.calls, 0);
}

Test(dns, cancel_when_answer_is_ready)
{
	struct answer a = { 0 }, b = { 0 };

	/* An invalid name is decided at once: cancel it before the loop delivers it. */
	dns_cancel(resolve_mx("", &a));
	resolve_mx("implicit.test", &b);
	cr_assert(run_until(&b.calls, 1, WAIT_MS));
	cr_assert_eq(a.calls, 0);
}

Test(dns, free_with_requests_in_flight)
{
	struct answer a = { 0 }, b = { 0 }, c = { 0 };

	resolve_mx("multi.test", &a);
	resolve_mx("", &b);
	resolve_host("mx1.multi.test", &c);
	/* The queries are on the wire (c-ares sends at once); b's answer is ready, undelivered. */
	dns_free(d);
	d = NULL;
	run_for(300);
	cr_assert_eq(a.calls + b.calls + c.calls, 0);
}

Test(dns, free_from_a_callback)
{
	struct answer a = { 0 }, b = { 0 };

	a.free_dns = true;
	resolve_mx("", &a); /* answered first, then frees the resolver */
	resolve_mx("many.test", &b);
	cr_assert(run_until(&a.calls, 1, WAIT_MS));
	cr_assert_null(d);
	run_for(300);
	cr_assert_eq(b.calls, 0);
}

Test(dns, free_from_a_callback_with_lookups_in_flight)
{
	struct answer a = { 0 }, b = { 0 }, c = { 0 };

	/* many.test: 20 address lookups follow its MX answer; c is answered meanwhile. */
	resolve_mx("many.test", &a);
	resolve_mx("multi.test", &b);
	c.free_dns = true;
	resolve_host("implicit.test", &c);
	cr_assert(run_until(&c.calls, 1, WAIT_MS));
	cr_assert_null(d);
	run_for(300);
	cr_assert_eq(a.calls + b.calls, 0);
}

Test(dns, set_timeout_busy_while_querying)
{
	struct answer a = { 0 };

	resolve_mx("multi.test", &a);
	cr_assert_eq(dns_set_timeout(d, 1000, 1), -1);
	cr_assert_eq(errno, EBUSY);
	cr_assert_eq(dns_set_timeout(d, 0, 1), -1);
	cr_assert(run_until(&a.calls, 1, WAIT_MS));
	cr_assert_eq(dns_set_timeout(d, 1000, 1), 0);
}

/* ---- construction ---- */

Test(dns, nameserver_lists)
{
	static const char *const good[] = { "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:53",
		                            "127.0.0.1:5353,[::1]:53" };
	static const char *const bad[] = { "", "not-an-address", "127.0.0.1:5353,bogus" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *err = NULL;
		struct dns *x = dns_new(base, good[i], &err);

		cr_assert_not_null(x, "%s: %s", good[i], err ? err : "?");
		dns_free(x);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = NULL;
		struct dns *x = dns_new(base, bad[i], &err);

		cr_assert_null(x, "\"%s\" accepted", bad[i]);
		cr_assert_not_null(err);
		free(err);
	}
	dns_free(NULL);
}

Test(dns, system_resolver_config)
{
	char *err = NULL;
	struct dns *x = dns_new(base, NULL, &err);

	cr_assert_not_null(x, "%s", err ? err : "?");
	dns_free(x);
}

Test(dns, status_names)
{
	cr_assert_str_eq(dns_status_name(DNS_OK), "ok");
	cr_assert_str_eq(dns_status_name(DNS_TEMPFAIL), "tempfail");
	cr_assert_str_eq(dns_status_name(DNS_NXDOMAIN), "nxdomain");
	cr_assert_str_eq(dns_status_name(DNS_NULL_MX), "null-mx");
	cr_assert_str_eq(dns_status_name(DNS_NO_ADDRESS), "no-address");
}
