/*
 * main.c: petrel's entry point: arguments, config, signals, wiring of the modules, and the
 * event loop. One process, one thread for the protocol (plus the spool's sync thread).
 *
 * Start-up order (petrel_run), for the privilege drop (priv.h): what may need root first (the
 * listeners, the TLS key, the users file), then the switch to `user:`, then everything else as
 * that user (the spool, the queue, the threads). systemd hears READY=1 when the loop is about
 * to run (notify.h).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "petrel/auth.h"
#include "petrel/config.h"
#include "petrel/control.h"
#include "petrel/dns.h"
#include "petrel/log.h"
#include "petrel/message.h"
#include "petrel/notify.h"
#include "petrel/priv.h"
#include "petrel/scheduler.h"
#include "petrel/smtp/server.h"
#include "petrel/spool.h"
#include "petrel/stats.h"
#include "petrel/tls.h"
#include "petrel/worker.h"
#ifndef PETREL_DEFAULT_CONFIG
#define PETREL_DEFAULT_CONFIG "/etc/petrel/petrel.yaml"
#endif

#define PETREL_SHUTDOWN_GRACE 30 /* seconds for sessions to finish their message */
struct petrel {
	struct event_base *base;
	struct petrel_config *cfg;       /* the current config (a reference) */
	struct petrel_config *cfg_start; /* the one it started with (a reference): what cannot be
	                                  * reloaded (spool, stats address, …) borrows from it */
	struct spool *spool;
	struct dns *dns;
	struct scheduler *sched;
	struct smtp_server *srv;
	struct tls_server *tls;
	struct auth_throttle *throttle;
	struct worker_pool *auth_workers;
	struct stats_endpoint *stats;   /* NULL without a stats: section */
	struct control_server *control; /* <spool>/control.sock, for `petrel queue` */
	unsigned draining; /* parts still finishing after a stop signal (inbound, outbound) */
	struct event *sig_term, *sig_int, *sig_hup, *grace;
	struct priv_user user; /* with drop: whom to become (config user:, group:) */
	bool drop;             /* started as root with user:: switch once the ports are bound */
	bool stopping;
	bool aborted;
};

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: petrel [-c FILE] [--check] [--allow-root]\n"
	        "       petrel [-c FILE] queue list [--by-domain] | show ID | flush |\n"
	        "                              delete ID | hold ID | release ID\n"
	        "       petrel --version | --help\n"
	        "\n"
	        "  -c, --config FILE  configuration file (default " PETREL_DEFAULT_CONFIG ")\n"
	        "      --check        validate the configuration and exit (0: valid, 1: errors)\n"
	        "      --allow-root   run as root when the configuration has no user: (started\n"
	        "                     as root with user:, petrel switches to that user)\n"
	        "  -V, --version      print the version and exit\n"
	        "  -h, --help         print this help and exit\n"
	        "  queue ...          the queue of the running petrel (list and show also read\n"
	        "                     the spool when it is stopped); exit 0, or 1 on an error\n"
	        "\n"
	        "petrel runs in the foreground and logs to stderr. SIGTERM or SIGINT stop it\n"
	        "gracefully: no new connections, sessions finish the message they hold.\n"
	        "SIGHUP reloads the configuration file (a file with errors is refused and the\n"
	        "running configuration kept); live sessions finish on the old settings.\n");
}

/* Inbound sessions, then outbound deliveries, report here when they are done. */
static void
petrel_drained(void *arg)
{
	struct petrel *p = arg;

	if (--p->draining > 0)
		return;
	log_info("petrel stopped: sessions and deliveries finished");
	event_base_loopexit(p->base, NULL);
}

/* The spool's hook: a committed message goes to the queue. */
static void
petrel_queue_hook(void *arg, struct message *msg)
{
	struct petrel *p = arg;

	if (p->sched)
		scheduler_add(p->sched, msg);
	else
		message_free(msg);
}

static void
petrel_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct petrel *p = arg;
	struct timeval tv = { 5, 0 };

	if (!p->aborted) {
		log_warn("petrel shutdown grace over: closing remaining sessions=%u "
		         "(unfinished deliveries stay queued)",
		         p->srv->nsessions);
		p->aborted = true;
		smtp_server_abort_all(p->srv);
		evtimer_add(p->grace, &tv);
		return;
	}
	log_warn("petrel exiting with sessions=%u still open", p->srv->nsessions);
	event_base_loopexit(p->base, NULL);
}

/* Each line of a config error report, logged. */
static void
petrel_log_errors(const char *errors)
{
	const char *line = errors, *nl;

	while (line != NULL && *line != '\0') {
		nl = strchr(line, '\n');
		log_error("petrel reload refused: %.*s", (int)(nl ? nl - line : (long)strlen(line)),
		          line);
		line = nl ? nl + 1 : NULL;
	}
}

/*
 * SIGHUP: read the config file again, with the TLS certificate, the users file and the routes'
 * files. Everything is loaded and every new listen: address bound before anything changes; any
 * failure keeps the running config whole and logs why. Then the new config is current: new
 * sessions, the next dispatch of each recipient, listeners added and removed. Sessions and
 * deliveries under way finish on what they started with (they hold references). What cannot
 * change without a restart (config_keep_fixed) keeps its running value, with a warning.
 * Returns whether it was applied, and in *outcome a short line for systemd's status.
 */
static bool
petrel_reload_config(struct petrel *p, const char **outcome)
{
	struct petrel_config *fresh = NULL;
	struct tls_server *tls = NULL;
	struct auth_users *users = NULL;
	struct sched_gen *gen = NULL;
	struct smtp_server_plan *plan = NULL;
	char *errors = NULL, *err = NULL, fixed[256];
	int nfixed;

	log_info("petrel SIGHUP: reloading config=%s", p->cfg->path);
	if (config_load(p->cfg->path, &fresh, &errors) == -1) {
		petrel_log_errors(errors ? errors : "out of memory\n");
		free(errors);
		*outcome = "reload refused: the configuration has errors, the old one is kept";
		return false;
	}
	if ((nfixed = config_keep_fixed(fresh, p->cfg, fixed, sizeof(fixed))) < 0) {
		err = strdup("out of memory");
		goto fail;
	}
	if (fresh->tls_certificate != NULL &&
	    (tls = tls_server_new(fresh->tls_certificate, fresh->tls_key, fresh->tls_min_version,
	                          fresh->tls_ciphers, &err)) == NULL)
		goto fail;
	if (fresh->auth_users_file != NULL &&
	    (users = auth_users_load(fresh->auth_users_file, &err)) == NULL)
		goto fail;
	if (users != NULL && p->auth_workers == NULL &&
	    (p->auth_workers = worker_pool_new(p->base, 1)) == NULL) {
		err = strdup("cannot start the AUTH worker");
		goto fail;
	}
	if (users != NULL && p->throttle == NULL &&
	    (p->throttle = auth_throttle_new(fresh->auth_max_failures,
	                                     fresh->auth_failure_window)) == NULL) {
		err = strdup("out of memory");
		goto fail;
	}
	if (scheduler_config_prepare(p->sched, fresh, &gen, &err) == -1)
		goto fail;
	if (smtp_server_prepare(p->srv, fresh, &plan, &err) == -1)
		goto fail;

	/* Nothing can fail from here. */
	smtp_server_commit(p->srv, plan, fresh, users);
	p->srv->workers = p->auth_workers;
	p->srv->throttle = p->throttle;
	if (p->throttle != NULL)
		auth_throttle_configure(p->throttle, fresh->auth_max_failures,
		                        fresh->auth_failure_window);
	tls_server_free(p->tls); /* live TLS sessions hold their own references to its context */
	p->tls = tls;
	p->srv->tls = tls;
	scheduler_config_commit(p->sched, gen);
	auth_users_free(users); /* the server holds it now */
	config_free(p->cfg);
	p->cfg = fresh;
	log_set_level((enum log_level)fresh->log_level);
	log_info("petrel reloaded config=%s hostname=%s listeners=%zu routes=%zu tls=%s users=%zu",
	         fresh->path, fresh->hostname, fresh->nlisten, fresh->nroutes,
	         fresh->tls_certificate ? "yes" : "no", auth_users_count(p->srv->users));
	if (nfixed > 0) {
		log_warn("petrel reload: %s changed in %s; a restart applies %s, until then the "
		         "running value%s kept",
		         fixed, fresh->path, nfixed > 1 ? "them" : "it",
		         nfixed > 1 ? "s are" : " is");
		*outcome = "configuration reloaded (some changes need a restart: see the log)";
		return true;
	}
	*outcome = "configuration reloaded";
	return true;

fail:
	log_error("petrel reload refused, the old configuration is kept: %s",
	          err ? err : "out of memory");
	free(err);
	scheduler_config_drop(gen);
	auth_users_free(users);
	tls_server_free(tls);
	config_free(fresh);
	*outcome = "reload refused: see the log, the old configuration is kept";
	return false;
}

/*
 * SIGHUP as systemd sees it: RELOADING=1, the reload, READY=1 (what Type=notify-reload
 * expects; Type=notify with ExecReload=kill -HUP shows "reloading" the same way). Nothing is
 * reloaded once stopping: READY=1 after STOPPING=1 would confuse systemd, and the listeners are
 * closed.
 */
static void
petrel_reload(struct petrel *p)
{
	const char *outcome;
	bool applied;

	if (p->stopping) {
		log_info("petrel SIGHUP while stopping: nothing reloaded");
		return;
	}
	notify_reloading("petrel reloading %s", p->cfg->path);
	applied = petrel_reload_config(p, &outcome);
	if (applied)
		stats_registry.reloads++;
	else
		stats_registry.reload_failures++;
	stats_registry.reload_ok = applied;
	notify_ready("petrel running (%s)", outcome);
}

static void
petrel_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct petrel *p = arg;
	struct timeval tv = { PETREL_SHUTDOWN_GRACE, 0 };
	if (sig == SIGHUP) {
		petrel_reload(p);
		return;
	}
	if (p->stopping) {
		log_warn("petrel second stop signal: exiting now");
		event_base_loopexit(p->base, NULL);
		return;
	}
	p->stopping = true;
	log_info("petrel stopping signal=%s", sig == SIGTERM ? "TERM" : "INT");
	notify_stopping("petrel stopping: finishing sessions=%u", p->srv->nsessions);
	evtimer_add(p->grace, &tv);
	p->draining = 2;
	smtp_server_shutdown(p->srv, petrel_drained, p);
	scheduler_shutdown(p->sched, petrel_drained, p);
}

static void
petrel_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * After the listeners are bound and the TLS key and users file read: started as root with
 * user:, give the spool to the user and become the user; started as someone else, clear the
 * capabilities it was given (systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE). No thread
 * exists yet (the spool's and the workers' are started after this), although glibc would
 * apply the switch to every thread anyway (priv.h).
 */
static int
petrel_drop_privileges(struct petrel *p)
{
	const struct petrel_config *cfg = p->cfg;
	char *err = NULL;
	int rc;

	if (p->drop) {
		if (priv_prepare_dir(cfg->spool, &p->user, &err) == -1) {
			log_error("petrel %s", err ? err : "out of memory");
			free(err);
			return -1;
		}
		if (priv_drop(&p->user, &err) == -1) {
			log_error("petrel cannot switch to user %s: %s", p->user.name,
			          err ? err : "out of memory");
			free(err);
			return -1;
		}
		log_info("petrel running as user=%s uid=%u group=%s gid=%u", p->user.name,
		         (unsigned)p->user.uid, p->user.group, (unsigned)p->user.gid);
	} else if (geteuid() == 0) {
		log_warn("petrel running as root (--allow-root): set user: to drop privileges");
		return 0;
	} else if ((rc = priv_drop_caps(&err)) == -1) {
		log_error("petrel cannot drop capabilities: %s", err ? err : "out of memory");
		free(err);
		return -1;
	} else if (rc == 1) {
		log_info("petrel capabilities dropped now that the listeners are bound");
	}
	/* SIGHUP reads them again, as this user: say now if that cannot work. */
	if (cfg->tls_certificate != NULL &&
	    (access(cfg->tls_certificate, R_OK) == -1 || access(cfg->tls_key, R_OK) == -1))
		log_warn("petrel tls.certificate or tls.key is not readable by uid=%u: a SIGHUP "
		         "reload will fail (make both readable by the user, e.g. mode 0640 and its "
		         "group)",
		         (unsigned)getuid());
	return 0;
}

static int
petrel_run(struct petrel *p)
{
	char *err = NULL;
	long n;
	struct rlimit rl;

	if (evthread_use_pthreads() == -1 || (p->base = event_base_new()) == NULL) {
		log_error("petrel cannot create the event loop");
		return 1;
	}
	/* What may need root: binding the listen addresses (they accept nothing until
	 * smtp_server_start below), the TLS key, the users file. The server gets the spool once it
	 * is open. */
	if ((p->srv = smtp_server_new(p->base, p->cfg, NULL)) == NULL) {
		log_error("petrel out of memory");
		return 1;
	}
	if (smtp_server_bind(p->srv, &err) == -1) {
		log_error("petrel %s", err ? err : "cannot listen");
		free(err);
		return 1;
	}
	if (p->cfg->tls_certificate) {
		p->tls = tls_server_new(p->cfg->tls_certificate, p->cfg->tls_key,
		                        p->cfg->tls_min_version, p->cfg->tls_ciphers, &err);
		if (p->tls == NULL) {
			log_error("petrel %s", err ? err : "cannot set up TLS");
			free(err);
			return 1;
		}
		p->srv->tls = p->tls;
	}
	if (p->cfg->auth_users_file) {
		p->srv->users = auth_users_load(p->cfg->auth_users_file, &err);
		if (p->srv->users == NULL) {
			log_error("petrel %s", err ? err : "cannot load the users file");
			free(err);
			return 1;
		}
		p->throttle =
		        auth_throttle_new(p->cfg->auth_max_failures, p->cfg->auth_failure_window);
		if (p->throttle == NULL) {
			log_error("petrel out of memory");
			return 1;
		}
		p->srv->throttle = p->throttle;
	}
	if (petrel_drop_privileges(p) == -1)
		return 1;
	/* From here on as the user: the spool (and its sync thread), the queue, the workers.
	 * Not a spool another petrel runs on: opening it would empty that one's tmp/. */
	if (control_probe(p->cfg->spool, &err) == -1) {
		log_error("petrel %s", err ? err : "out of memory");
		free(err);
		return 1;
	}
	p->spool = spool_open(p->base, p->cfg->spool, p->cfg->durability, &err);
	if (p->spool == NULL) {
		log_error("petrel %s", err ? err : "cannot open spool");
		free(err);
		return 1;
	}
	p->srv->spool = p->spool;
	if ((p->dns = dns_new(p->base, p->cfg->nameservers, &err)) == NULL) {
		log_error("petrel %s", err ? err : "cannot start the resolver");
		free(err);
		return 1;
	} /* 2 s per try, 2 rounds: a silent server costs seconds, not c-ares' default 75 s. */
	dns_set_timeout(p->dns, 2000, 2);
	/* Also loads the routes' ca_file and auth password_file (as the user): a bad one stops
	 * the start. */
	if ((p->sched = scheduler_new(p->base, p->cfg, p->spool, p->dns, &err)) == NULL) {
		log_error("petrel cannot start the queue: %s", err ? err : "out of memory");
		free(err);
		return 1;
	}
	spool_set_queue_hook(p->spool, petrel_queue_hook, p);
	n = scheduler_recover(p->sched);
	if (n < 0)
		log_error("spool scan failed dir=%s error=\"%s\"", p->cfg->spool, strerror(errno));
	else
		log_info("spool ready dir=%s durability=%s messages=%ld", p->cfg->spool,
		         p->cfg->durability == CONFIG_DURABILITY_FSYNC ? "fsync" : "none", n);
	if (p->srv->users != NULL) {
		if ((p->auth_workers = worker_pool_new(p->base, 1)) == NULL) {
			log_error("petrel out of memory");
			return 1;
		}
		p->srv->workers = p->auth_workers;
		log_info("auth users=%zu require_tls=%s", auth_users_count(p->srv->users),
		         p->cfg->auth_require_tls ? "yes" : "no");
	}
	/* As the user: a stats address needs a port above 1023. */
	if (p->cfg->stats_address != NULL &&
	    (p->stats = stats_endpoint_new(p->base, p->cfg_start, p->srv, p->spool, p->sched,
	                                   &err)) == NULL) {
		log_error("petrel %s", err ? err : "cannot start the stats endpoint");
		free(err);
		return 1;
	}
	if ((p->control = control_server_new(p->base, p->cfg->spool, p->sched, &err)) == NULL) {
		log_error("petrel %s", err ? err : "cannot create the control socket");
		free(err);
		return 1;
	}
	p->sig_term = evsignal_new(p->base, SIGTERM, petrel_signal_cb, p);
	p->sig_int = evsignal_new(p->base, SIGINT, petrel_signal_cb, p);
	p->sig_hup = evsignal_new(p->base, SIGHUP, petrel_signal_cb, p);
	p->grace = evtimer_new(p->base, petrel_grace_cb, p);
	if (!p->sig_term || !p->sig_int || !p->sig_hup || !p->grace ||
	    evsignal_add(p->sig_term, NULL) || evsignal_add(p->sig_int, NULL) ||
	    evsignal_add(p->sig_hup, NULL)) {
		log_error("petrel cannot set up signal handling");
		return 1;
	}
	for (size_t i = 0; i < p->cfg->nlisten; i++) {
		const struct config_listen *l = &p->cfg->listen[i];
		if (l->role == CONFIG_ROLE_SUBMISSION && p->cfg->auth_require_tls &&
		    config_listen_tls_effective(p->cfg, l) == CONFIG_LISTEN_TLS_NONE)
			log_warn(
			        "listen %s: a submission listener without TLS can never offer AUTH "
			        "(auth.require_tls is true): every MAIL there gets 530",
			        l->address);
	}
	/* Ready: connections are taken from now on, and systemd hears so. */
	if (smtp_server_start(p->srv, &err) == -1) {
		log_error("petrel %s", err ? err : "cannot listen");
		free(err);
		return 1;
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	log_info("petrel %s started hostname=%s listeners=%zu max_connections=%u nofile=%llu",
	         PETREL_VERSION, p->cfg->hostname, p->cfg->nlisten, p->cfg->max_connections,
	         (unsigned long long)rl.rlim_cur);
	notify_ready("petrel %s running: listeners=%zu queued=%ld", PETREL_VERSION, p->cfg->nlisten,
	             n > 0 ? n : 0);
	event_base_dispatch(p->base);
	return 0;
}

/*
 * Who petrel runs as, decided before anything is bound. As root: user: names whom to become
 * (petrel_drop_privileges), and without it root needs --allow-root. As anyone else: user:, if
 * set, must be who petrel already is (it cannot switch).
 */
static int
petrel_choose_user(struct petrel *p, bool allow_root)
{
	char *err = NULL;

	if (p->cfg->user == NULL) {
		if (geteuid() != 0 || allow_root)
			return 0;
		fprintf(stderr,
		        "petrel: refusing to run as root without user: in %s; set user: to the "
		        "account petrel should switch to once its ports are bound, or pass "
		        "--allow-root to run as root\n",
		        p->cfg->path);
		return -1;
	}
	if (priv_resolve(p->cfg->user, p->cfg->group, &p->user, &err) == -1) {
		fprintf(stderr, "petrel: %s\n", err ? err : "out of memory");
		free(err);
		return -1;
	}
	if (geteuid() == 0) {
		p->drop = true;
		return 0;
	}
	if (geteuid() != p->user.uid || getuid() != p->user.uid) {
		fprintf(stderr,
		        "petrel: user: %s (uid %u) is set, but petrel runs as uid %u, not as root: "
		        "it cannot switch users\n",
		        p->user.name, (unsigned)p->user.uid, (unsigned)geteuid());
		return -1;
	}
	if (getegid() != p->user.gid)
		log_warn("petrel runs with gid=%u, not group=%s gid=%u (only root can switch)",
		         (unsigned)getegid(), p->user.group, (unsigned)p->user.gid);
	return 0;
}

static void
petrel_cleanup(struct petrel *p)
{
	struct spool_stats st;

	if (p->spool) {
		spool_get_stats(p->spool, &st);
		log_info("spool stats commits=%llu sync_batches=%llu failures=%llu",
		         (unsigned long long)st.commits, (unsigned long long)st.batches,
		         (unsigned long long)st.failures);
	}
	if (p->srv)
		log_info("smtp stats connections=%llu refused=%llu messages=%llu bytes=%llu "
		         "rejected=%llu",
		         (unsigned long long)p->srv->stats.connections,
		         (unsigned long long)p->srv->stats.refused_limit,
		         (unsigned long long)p->srv->stats.messages,
		         (unsigned long long)p->srv->stats.bytes,
		         (unsigned long long)p->srv->stats.rejected);
	if (p->sig_term)
		event_free(p->sig_term);
	if (p->sig_int)
		event_free(p->sig_int);
	if (p->sig_hup)
		event_free(p->sig_hup);
	if (p->grace)
		event_free(p->grace);
	if (p->sched) {
		struct scheduler_stats qs;
		scheduler_get_stats(p->sched, &qs);
		log_info("queue stats queued=%llu delivered=%llu deferred=%llu bounced=%llu "
		         "expired=%llu dsns=%llu",
		         (unsigned long long)qs.queued, (unsigned long long)qs.delivered,
		         (unsigned long long)qs.deferred, (unsigned long long)qs.bounced,
		         (unsigned long long)qs.expired, (unsigned long long)qs.dsns);
	}
	stats_endpoint_free(p->stats);     /* it reads the server, spool and queue */
	control_server_free(p->control);   /* it borrows the queue; removes control.sock */
	worker_pool_free(p->auth_workers); /* before the sessions its jobs point to */
	smtp_server_free(p->srv);
	scheduler_free(p->sched);
	auth_throttle_free(p->throttle);
	tls_server_free(p->tls);
	dns_free(p->dns);
	if (p->spool)
		spool_set_queue_hook(p->spool, NULL, NULL);
	spool_close(p->spool);
	config_free(p->cfg);
	config_free(p->cfg_start);
	if (p->base)
		event_base_free(p->base);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "check", no_argument, NULL, 'k' },
		{ "allow-root", no_argument, NULL, 'R' },   { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	const char *path = PETREL_DEFAULT_CONFIG;
	struct petrel p;
	char *errors = NULL;
	int check = 0, queue = 0, c, rc;
	bool allow_root = false;

	/* "+": options end at the first word, so `queue list --by-domain` stays whole. */
	while ((c = getopt_long(argc, argv, "+c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 'R':
			allow_root = true;
			break;
		case 'V':
			printf("petrel %s\n", PETREL_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "queue") == 0 && !check) {
		queue = optind + 1;
	} else if (optind != argc) {
		fprintf(stderr, "petrel: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	memset(&p, 0, sizeof(p));
	if (config_load(path, &p.cfg, &errors) == -1) {
		fputs(errors ? errors : "petrel: cannot load configuration\n", stderr);
		free(errors);
		return 1;
	}
	if (check) {
		printf("%s: configuration is valid\n", path);
		config_free(p.cfg);
		return 0;
	}
	if (queue) {
		rc = control_cli(p.cfg->spool, argc - queue, argv + queue);
		config_free(p.cfg);
		return rc;
	}
	log_set_level((enum log_level)p.cfg->log_level);
	if (p.cfg->log_target == CONFIG_LOG_SYSLOG)
		log_use_syslog();
	if (petrel_choose_user(&p, allow_root) == -1) {
		config_free(p.cfg);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	petrel_raise_nofile();
	p.cfg_start = config_ref(p.cfg);
	stats_registry.reload_ok = 1;
	rc = petrel_run(&p);
	petrel_cleanup(&p);
	return rc;
}
