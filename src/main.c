/* src/main.c - ringmta: configuration, start-up checks, shards, signals. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/log_sink.h"
#include "base/queue_id.h"
#include "base/workpool.h"
#include "conf/config.h"
#include "conf/passwd.h"
#include "conf/policy.h"
#include "conf/route.h"
#include "deliver/maildir.h"
#include "deliver/outbound.h"
#include "deliver/qmgr.h"
#include "dns/resolver.h"
#include "engine/httpd.h"
#include "engine/control.h"
#include "engine/listen.h"
#include "engine/metrics.h"
#include "engine/shard.h"
#include "engine/smtpd.h"
#include "engine/xshard.h"
#include "queue/spool.h"
#include "src/privilege.h"
#include "src/notify.h"
#include "src/passwd_cmd.h"
#include "src/queue_cmd.h"
#include "src/sendmail.h"
#include "tls/tls_ctx.h"

#define MAIN_OVERRIDES_MAX 64u
#define MAIN_STOP_GRACE_MS 10000u   /* after SIGTERM: finish commits and deliveries */
#define MAIN_RESOLV_CONF   "/etc/resolv.conf"
#define MAIN_AUTH_THREADS_MAX 4u      /* password hashes at once (one per shard, at most this) */
#define MAIN_AUTH_QUEUE_MAX 256u      /* hashes waiting; more get 454 */

/* Listener profiles (struct main_world's profiles; listen_spec.profile). */
enum main_profile {
	MAIN_PROFILE_MX,            /* listen: port 25 style, STARTTLS when TLS is configured */
	MAIN_PROFILE_SUBMISSION,    /* submission_listen: STARTTLS, then AUTH before MAIL (587) */
	MAIN_PROFILE_SMTPS,         /* smtps_listen: implicit TLS (465), AUTH before MAIL if set */
	MAIN_PROFILE_COUNT,
};

/* What the command line asks for besides running the daemon. */
enum main_mode {
	MAIN_MODE_RUN,
	MAIN_MODE_CHECK,        /* --check-config */
	MAIN_MODE_SAMPLE,       /* --print-sample */
	MAIN_MODE_MAN,          /* --print-man-keys */
};

/* File descriptors, besides one per connection (RLIMIT_NOFILE is raised to what these need). */
#define MAIN_FDS_PROCESS        16u   /* stdio, the log, the spool lock, the stop ring, start-up */
#define MAIN_FDS_SPOOL           2u   /* per shard: the spool directory and the active segment */
#define MAIN_FDS_SPOOL_SEGMENTS 64u   /* per shard: older segments with live mail, open for reads
                                       * (64 x 64 MiB; more only with a queue of over 4 GiB) */
#define MAIN_FDS_HEADROOM       64u   /* per shard: accepted sockets waiting for their 421, and
                                       * descriptors closed through the ring but not yet gone */

static void
main_usage(FILE *f)
{
	fprintf(f, "usage: ringmta [-c FILE] [-o key=value]... [--check-config | --print-sample]\n"
		"       ringmta passwd USER   (prints an auth_users_file line)\n"
		"       ringmta queue [-c FILE] [-o key=value]... list|summary|flush|delete|hold|"
		"release|bounce ...\n"
		"       ringmta sendmail [options] [recipient...]   (also as sendmail; see ringmta(8))\n"
		"  -c FILE          configuration file of key = value lines\n"
		"  -o key=value     override one key (after the file; may repeat)\n"
		"  --check-config   print the effective configuration and exit\n"
		"  --print-sample   print every key with its meaning and default (keys set by -c or -o\n"
		"                   uncommented): the sample ringmta.conf\n"
		"  --print-man-keys print every key, meaning and default as roff, for ringmta.conf(5)\n");
}

/* Reads the configuration from the default, the file and the overrides, in that order. */
static int
main_config(int argc, char **argv, struct config *cfg, enum main_mode *mode)
{
	char err[CONFIG_ERR_MAX];
	const char *file = NULL;
	const char *overrides[MAIN_OVERRIDES_MAX] = { NULL };
	uint32_t override_count = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc
			&& override_count < MAIN_OVERRIDES_MAX) {
			overrides[override_count++] = argv[++i];
		} else if (strcmp(argv[i], "--check-config") == 0) {
			*mode = MAIN_MODE_CHECK;
		} else if (strcmp(argv[i], "--print-sample") == 0) {
			*mode = MAIN_MODE_SAMPLE;
		} else if (strcmp(argv[i], "--print-man-keys") == 0) {
			*mode = MAIN_MODE_MAN;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			main_usage(stdout);
			exit(0);
		} else {
			main_usage(stderr);
			return -1;
		}
	}
	if (config_load_all(cfg, file, overrides, override_count, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return -1;
	}
	return 0;
}

/* mkdir -p: the default ./var/spool and ./var/mail need their parents. */
static int
main_mkdirs(const char *path)
{
	char buf[CONFIG_STR_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		buf[i] = saved;
	}
	return 0;
}

/* Two daemons on one spool would interleave their logs: the first one holds this lock. */
static int
main_lock_spool(const char *spool_dir)
{
	int rc = main_mkdirs(spool_dir);
	if (rc < 0) {
		fprintf(stderr, "ringmta: %s: %s\n", spool_dir, strerror(-rc));
		return -1;
	}
	char path[CONFIG_STR_MAX + 32];
	snprintf(path, sizeof(path), "%s/ringmta.lock", spool_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "ringmta: %s: %s (is another ringmta using this spool?)\n", path,
			strerror(errno));
		return -1;
	}
	return fd;   /* held until exit */
}

static uint64_t
main_clock_real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The read-only world every shard shares, frozen before the shards start. */
struct main_world {
	const struct config *cfg;
	const struct policy *policy;
	struct smtpd_profile profiles[MAIN_PROFILE_COUNT];
	const struct privilege *privilege;   /* whom to become once the shards are set up */
	struct listen_spec listen[3u * CONFIG_LISTEN_MAX + 1u];   /* the TCP ones, then local_listen */
	uint32_t listen_count;                   /* TCP: every shard opens these */
	uint32_t local_count;                    /* 1 with local_listen: shard 0 serves it */
	struct tls_tickets *tickets;             /* with tls: the ticket master secret */
	struct tls_server_slot *tls;             /* the server context, or NULL without TLS */
	struct tls_client_ctx *tls_client;       /* outbound STARTTLS, or NULL (level none) */
	struct passwd_slot *passwd;              /* the AUTH users in force, or NULL */
	struct workpool *workpool;               /* with passwd */
	uint64_t started_real_ms;
	const struct route *route;
	struct dns_resolver_config dns;
	bool dns_ok;                             /* else lookups defer: no DNS server known */
	struct xshard *xshard;                   /* NULL with one shard */
	struct listen_spec metrics_listen[CONFIG_LISTEN_MAX];
	struct metrics *metrics;                 /* NULL without metrics_listen */
};

/* What runs on one shard, as the setup made it. */
struct main_shard {
	const struct main_world *w;
	uint32_t adopt[QUEUE_ID_SHARD_MAX];   /* stranded shard directories it takes in */
	uint32_t adopt_count;
	struct spool *spool;
	struct smtpd *smtpd;
	struct listeners *listeners;
	struct maildir *maildir;
	struct qmgr *qmgr;
	struct dns_resolver *resolver;
	struct outbound *outbound;
	struct xshard_endpoint *xep;
	struct httpd *httpd;                  /* shard 0 only, with metrics_listen */
	struct listeners *metrics_listeners;
	uint64_t metrics_due_ms;              /* the next publication */
	uint64_t census_due_ms;               /* the next count of the queue */
	struct metrics_shard snap;            /* scratch of the publication */
	struct control *control;
	struct log_sink *log;
};

static void
main_listen_add(struct main_world *w, const struct config_addr *addrs, uint32_t count,
	uint32_t profile)
{
	for (uint32_t i = 0; i < count; i++) {
		ASSERT(w->listen_count < ARRAY_LEN(w->listen));
		w->listen[w->listen_count++] = (struct listen_spec){ .sa = addrs[i].sa,
			.sa_len = addrs[i].sa_len, .profile = profile };
	}
}

/* The three profiles (config_check made sure each listener has what its profile needs) and
 * the listeners. */
static void
main_world_init(struct main_world *w, const struct config *cfg, const struct policy *policy,
	const struct privilege *privilege)
{
	w->cfg = cfg;
	w->policy = policy;
	w->privilege = privilege;
	struct smtp_server_config base = {
		.hostname = slice_make(cfg->myhostname, strlen(cfg->myhostname)),
		.max_message_size = cfg->max_message_size,
		.max_recipients = cfg->max_recipients,
		.bad_cmd_max = cfg->bad_cmd_max,
	};
	bool auth = cfg->auth_users_file[0] != '\0';
	struct smtpd_profile *p = w->profiles;
	p[MAIN_PROFILE_MX].smtp = base;
	p[MAIN_PROFILE_MX].smtp.starttls_offered = w->tls != NULL;
	p[MAIN_PROFILE_SUBMISSION].smtp = base;
	p[MAIN_PROFILE_SUBMISSION].smtp.starttls_offered = true;
	p[MAIN_PROFILE_SUBMISSION].smtp.tls_required = true;
	p[MAIN_PROFILE_SUBMISSION].smtp.auth_offered = true;
	p[MAIN_PROFILE_SUBMISSION].smtp.auth_required = true;
	p[MAIN_PROFILE_SUBMISSION].smtp.sender_is_login = cfg->submission_sender_check;
	p[MAIN_PROFILE_SUBMISSION].msa_fixup = true;
	p[MAIN_PROFILE_SMTPS].smtp = base;
	p[MAIN_PROFILE_SMTPS].smtp.auth_offered = auth;
	p[MAIN_PROFILE_SMTPS].smtp.auth_required = auth;
	p[MAIN_PROFILE_SMTPS].smtp.sender_is_login = cfg->submission_sender_check;
	p[MAIN_PROFILE_SMTPS].implicit_tls = true;
	p[MAIN_PROFILE_SMTPS].msa_fixup = true;
	main_listen_add(w, cfg->listen, cfg->listen_count, MAIN_PROFILE_MX);
	main_listen_add(w, cfg->submission_listen, cfg->submission_listen_count,
		MAIN_PROFILE_SUBMISSION);
	main_listen_add(w, cfg->smtps_listen, cfg->smtps_listen_count, MAIN_PROFILE_SMTPS);
	for (uint32_t i = 0; i < cfg->metrics_listen_count; i++) {
		w->metrics_listen[i].sa = cfg->metrics_listen[i].sa;
		w->metrics_listen[i].sa_len = cfg->metrics_listen[i].sa_len;
	}
	w->local_count = 0;
	if (cfg->local_listen[0] != '\0') {
		struct listen_spec *l = &w->listen[w->listen_count];
		struct sockaddr_un *sun = (struct sockaddr_un *)&l->sa;
		_Static_assert(CONFIG_UNIX_PATH_MAX < sizeof(sun->sun_path), "local_listen fits");
		memset(l, 0, sizeof(*l));
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, cfg->local_listen, strlen(cfg->local_listen) + 1);
		l->sa_len = sizeof(*sun);
		l->profile = MAIN_PROFILE_MX;   /* the session lets a local user relay */
		w->local_count = 1;
	}
}

_Static_assert((int)QMGR_DEST_DELIVERED == (int)METRICS_DELIVERED
	&& (int)QMGR_DEST_DEFERRED == (int)METRICS_DEFERRED
	&& (int)QMGR_DEST_BOUNCED == (int)METRICS_BOUNCED
	&& (int)QMGR_DEST_EXPIRED == (int)METRICS_EXPIRED, "the tally's kinds are the outcomes");

/* What this shard's modules counted, into its metrics slot (see engine/metrics.h). */
static void
main_metrics_publish(struct shard *sh, struct main_shard *ms)
{
	struct metrics_shard *x = &ms->snap;
	const struct listen_stats *ls = listeners_stats(ms->listeners);
	const struct qmgr_stats *q = qmgr_stats(ms->qmgr);
	const struct spool_stats *sp = spool_stats(ms->spool);
	const struct outbound_stats *o = outbound_stats(ms->outbound);
	const struct smtpd_stats *in = smtpd_stats(ms->smtpd);
	struct spool_census queue = x->queue;   /* kept from the last count */
	if (sh->ring.now_ms >= ms->census_due_ms) {
		spool_census(ms->spool, sh->ring.now_real_ms, &queue);
		/* The walk is O(queued messages): spaced out in proportion, so that it costs
		 * about the same share of the shard whatever the depth. */
		uint64_t every = spool_live(ms->spool) / METRICS_CENSUS_MESSAGES_PER_MS;
		every = every < METRICS_PUBLISH_MS ? METRICS_PUBLISH_MS
			: every > METRICS_CENSUS_MAX_MS ? METRICS_CENSUS_MAX_MS : every;
		ms->census_due_ms = sh->ring.now_ms + every;
	}
	*x = (struct metrics_shard){
		.connections = conn_pool_live(&sh->conns),
		.received = in->messages_committed,
		.outcomes = { q->delivered, q->deferred, q->bounced, q->expired },
		.out_connections = o->connections,
		.out_connect_failures = o->connect_failures,
		.tls_handshakes = { in->tls_handshakes, o->tls_handshakes },
		.tls_failures = { in->tls_failures, o->tls_failures },
		.auth_ok = in->auth_ok,
		.auth_failed = in->auth_failed,
		.spool_bytes = spool_bytes(ms->spool),
		.fdatasyncs = sp->fdatasyncs,
		.fdatasync_latency = sp->fdatasync_latency,
		.delivery_latency = q->delivery_latency,
		.loop_turns = sh->stats.turns,
		.loop_completions = sh->stats.completions,
		.loop_busy_ns = sh->stats.busy_ns,
		.queue = queue,
	};
	memcpy(x->accepted, ls->accepted_by, sizeof(x->accepted));
	x->destination_count = tally_top(qmgr_destinations(ms->qmgr), x->destinations,
		METRICS_DESTINATIONS_MAX);
	if (ms->resolver != NULL) {
		struct dns_resolver_stats d;
		dns_resolver_get_stats(ms->resolver, &d);
		x->dns_queries = d.queries;
		x->dns_timeouts = d.timeouts;
		x->dns_cache_hits = d.cache_hits;
		x->dns_cache_misses = d.cache_misses;
	}
	metrics_publish(ms->w->metrics, sh->index, x);
}

static void
main_metrics_turn(void *ctx)
{
	struct shard *sh = ctx;
	struct main_shard *ms = sh->p.ctx;
	if (sh->ring.now_ms < ms->metrics_due_ms)
		return;
	main_metrics_publish(sh, ms);
	ms->metrics_due_ms = sh->ring.now_ms + METRICS_PUBLISH_MS;
}

static uint64_t
main_metrics_next_ms(void *ctx)
{
	const struct shard *sh = ctx;
	const struct main_shard *ms = sh->p.ctx;
	return ms->metrics_due_ms > sh->ring.now_ms ? ms->metrics_due_ms - sh->ring.now_ms : 0;
}

static const struct ring_hooks main_metrics_hooks = {
	.name = "metrics",
	.turn = main_metrics_turn,
	.next_ms = main_metrics_next_ms,
};

/* With metrics_listen: every shard publishes; shard 0 serves the endpoint. */
static int
main_shard_metrics(struct shard *sh, struct main_shard *ms)
{
	const struct main_world *w = ms->w;
	if (w->metrics == NULL)
		return 0;
	ring_hooks_register(&sh->ring, &main_metrics_hooks, sh);
	if (sh->index != 0)
		return 0;
	int rc = httpd_init(&sh->ring, &sh->conns, w->metrics, &ms->httpd);
	if (rc < 0)
		return rc;
	uint32_t failed = 0;
	rc = listeners_open(&sh->ring, httpd_accept, ms->httpd, w->metrics_listen,
		w->cfg->metrics_listen_count, &ms->metrics_listeners, &failed);
	if (rc < 0)
		fprintf(stderr, "ringmta: metrics_listen %u: %s\n", failed, strerror(-rc));
	return rc;
}

/* Start-up: the server context and the ticket secret, the AUTH users and their workers. */
static int
main_world_security(struct main_world *w, char *err, size_t err_len)
{
	const struct config *cfg = w->cfg;
	static struct tls_server_slot slot;
	if (cfg->tls_cert_file[0] != '\0' || cfg->tls_eccert_file[0] != '\0') {
		struct tls_server_ctx *ctx;
		if (tls_tickets_new(&w->tickets) != 0) {
			snprintf(err, err_len, "TLS session ticket secret: no random octets");
			return -1;
		}
		if (tls_server_ctx_new(cfg, w->tickets, &ctx, err, err_len) != 0)
			return -1;
		tls_server_slot_init(&slot, ctx);
		w->tls = &slot;
	}
	if ((cfg->smtp_tls_security_level != CONFIG_TLS_NONE || route_policy_wants_tls(w->route))
		&& tls_client_ctx_new(cfg, &w->tls_client, err, err_len) != 0)
		return -1;
	if (cfg->auth_users_file[0] != '\0') {
		static struct passwd_slot users;
		struct passwd_table *t;
		if (passwd_load(cfg->auth_users_file, &t, err, err_len) != 0)
			return -1;
		passwd_slot_init(&users, t);
		w->passwd = &users;
		uint32_t threads = cfg->shards < MAIN_AUTH_THREADS_MAX ? cfg->shards
			: MAIN_AUTH_THREADS_MAX;
		int rc = workpool_create(threads, MAIN_AUTH_QUEUE_MAX, &w->workpool);
		if (rc < 0) {
			snprintf(err, err_len, "AUTH worker threads: %s", strerror(-rc));
			return -1;
		}
	}
	return 0;
}

/* SIGHUP: the certificates and keys are read again; the new context serves new handshakes,
 * connections keep theirs. A failing build keeps the old one. */
static void
main_tls_reload(struct main_world *w)
{
	char err[TLS_CTX_ERR_MAX];
	struct tls_server_ctx *ctx;
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), main_clock_real_ms(), "tls_reload");
	if (tls_server_ctx_new(w->cfg, w->tickets, &ctx, err, sizeof(err)) != 0) {
		log_line_str(&l, "result", "failed");
		log_line_quoted(&l, "reason", slice_make(err, strlen(err)));
	} else {
		tls_server_slot_publish(w->tls, ctx);
		log_line_str(&l, "result", "ok");
	}
	log_write(buf, log_line_end(&l));
}

/* SIGHUP: auth_users_file is read again; AUTH from now on uses the new users, a verification
 * under way finishes with the old ones. A file that fails to load keeps the old table. */
static void
main_passwd_reload(struct main_world *w)
{
	char err[CONFIG_STR_MAX + 128];
	struct passwd_table *t;
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), main_clock_real_ms(), "auth_reload");
	if (passwd_load(w->cfg->auth_users_file, &t, err, sizeof(err)) != 0) {
		log_line_str(&l, "result", "failed");
		log_line_quoted(&l, "reason", slice_make(err, strlen(err)));
	} else {
		log_line_str(&l, "result", "ok");
		log_line_u64(&l, "users", passwd_count(t));
		passwd_slot_publish(w->passwd, t);
	}
	log_write(buf, log_line_end(&l));
}

/* On the shard's thread: the cross-shard endpoint, the resolver and the outbound agent. */
static int
main_shard_outbound(struct shard *sh, struct main_shard *ms)
{
	const struct main_world *w = ms->w;
	struct ring *r = &sh->ring;
	if (w->xshard != NULL) {
		ms->xep = xshard_endpoint(w->xshard, sh->index);
		xshard_attach(ms->xep, r);
	}
	if (w->dns_ok) {
		int rc = dns_resolver_new(r, &w->dns, &ms->resolver);
		if (rc < 0)
			return rc;
	}
	struct outbound_params op = { .cfg = w->cfg, .route = w->route, .conns = &sh->conns,
		.resolver = ms->resolver, .xshard = ms->xep, .shard_count = w->cfg->shards,
		.tls = w->tls_client };
	return outbound_init(r, &op, &ms->outbound);
}

static void
main_shard_loop_end(struct shard *sh, void *ctx)
{
	struct main_shard *ms = ctx;
	if (ms->xep != NULL)
		xshard_detach(ms->xep);
	if (!sh->clean_exit)
		log_sink_abandon(ms->log);   /* no teardown follows: its lines go out now */
}

static void
main_flush(void *ctx)
{
	outbound_flush(ctx);
}

/* On the shard's thread: the spool, the SMTP sessions and their listeners, the agents. */
static int
main_shard_setup(struct shard *sh, void *ctx)
{
	struct main_shard *ms = ctx;
	const struct main_world *w = ms->w;
	const struct config *cfg = w->cfg;
	struct ring *r = &sh->ring;
	struct spool_params sp = {
		.spool_dir = cfg->spool_dir,
		.bufs = &sh->bufs,
		.adopt = ms->adopt,
		.adopt_count = ms->adopt_count,
		.shard = sh->index,
		.minimal_backoff_ms = (uint64_t)cfg->minimal_backoff_s * 1000u,
		.maximal_backoff_ms = (uint64_t)cfg->maximal_backoff_s * 1000u,
		.queue_lifetime_ms = (uint64_t)cfg->queue_lifetime_s * 1000u,
		.delay_warning_ms = (uint64_t)cfg->delay_warning_s * 1000u,
	};
	int rc = spool_open(r, &sp, &ms->spool);
	if (rc < 0)
		return rc;
	struct smtpd_params dp = { .cfg = cfg, .policy = w->policy, .spool = ms->spool,
		.conns = &sh->conns, .profiles = w->profiles, .profile_count = MAIN_PROFILE_COUNT,
		.tls = w->tls, .passwd = w->passwd,
		.workpool = w->workpool };
	rc = smtpd_init(r, &dp, &ms->smtpd);
	if (rc < 0)
		return rc;
	struct maildir_params mp = { .root = cfg->maildir_root, .myhostname = cfg->myhostname,
		.started_real_ms = w->started_real_ms, .sync = cfg->maildir_sync };
	rc = maildir_init(r, ms->spool, &mp, &ms->maildir);
	if (rc < 0)
		return rc;
	rc = main_shard_outbound(sh, ms);
	if (rc < 0)
		return rc;
	struct qmgr_params qp = { .cfg = cfg, .policy = w->policy, .spool = ms->spool,
		.maildir = ms->maildir, .outbound = ms->outbound };
	rc = qmgr_init(r, &qp, &ms->qmgr);
	if (rc < 0)
		return rc;
	/* From here on this thread's log lines leave through the ring, once per turn. */
	rc = log_sink_open(r, &ms->log);
	if (rc < 0)
		return rc;
	char path[CONFIG_CONTROL_SOCKET_MAX];
	rc = config_control_socket(cfg, sh->index, path, sizeof(path));
	struct control_params cp = { .path = path, .shard = sh->index, .shards = cfg->shards,
		.spool = ms->spool, .conns = &sh->conns, .flush = main_flush,
		.flush_ctx = ms->outbound };
	if (rc == 0)
		rc = control_open(r, &cp, &ms->control);
	if (rc < 0) {
		fprintf(stderr, "ringmta: control socket %s: %s\n", path, strerror(-rc));
		return rc;
	}
	uint32_t failed = 0;
	uint32_t count = w->listen_count + (sh->index == 0 ? w->local_count : 0);
	rc = listeners_open(r, smtpd_accept, ms->smtpd, w->listen, count, &ms->listeners, &failed);
	if (rc < 0) {
		fprintf(stderr, "ringmta: listen %u: %s\n", failed, strerror(-rc));
		return rc;
	}
	return main_shard_metrics(sh, ms);
}

/* At exit: what this shard did, for operators and for perf/ (the fdatasyncs go through the ring,
 * where strace cannot count them). */
static void
main_shard_stats(struct shard *sh, struct main_shard *ms)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	const struct smtpd_stats *d = smtpd_stats(ms->smtpd);
	log_line_begin(&l, buf, sizeof(buf), sh->ring.now_real_ms, "stats");
	log_line_u64(&l, "shard", sh->index);
	log_line_u64(&l, "connections", listeners_stats(ms->listeners)->accepted);
	log_line_u64(&l, "messages", d->messages_committed);
	log_line_u64(&l, "fdatasyncs", spool_stats(ms->spool)->fdatasyncs);
	log_line_u64(&l, "maildir_syncs", maildir_stats(ms->maildir)->syncs);
	log_line_u64(&l, "maildir_file_syncs", maildir_stats(ms->maildir)->file_syncs);
	log_line_u64(&l, "deliveries", maildir_stats(ms->maildir)->deliveries);
	const struct spool_stats *ss = spool_stats(ms->spool);
	log_line_u64(&l, "body_bytes", ss->body_bytes);
	log_line_u64(&l, "body_held", ss->body_held);
	log_line_u64(&l, "body_copied", ss->body_copied + sh->conns.stats.body_copied);
	log_line_u64(&l, "queued", spool_live(ms->spool));
	log_line_u64(&l, "copied", spool_stats(ms->spool)->copied);
	log_line_u64(&l, "turns", sh->stats.turns);
	log_line_u64(&l, "completions", sh->stats.completions);
	log_line_u64(&l, "busy_us", sh->stats.busy_ns / 1000u);
	const struct outbound_stats *o = outbound_stats(ms->outbound);
	log_line_u64(&l, "out_connections", o->connections);
	log_line_u64(&l, "out_transactions", o->transactions);
	log_line_u64(&l, "out_delivered", o->delivered);
	log_line_u64(&l, "out_body_bytes", o->body_bytes);   /* all sent borrowed, none copied */
	log_line_u64(&l, "log_writes", log_sink_stats(ms->log)->writes);
	log_line_u64(&l, "log_dropped", log_sink_stats(ms->log)->dropped);
	log_write(buf, log_line_end(&l));
}

static void
main_shard_teardown(struct shard *sh, void *ctx)
{
	struct main_shard *ms = ctx;
	main_shard_stats(sh, ms);
	listeners_close(ms->listeners);
	if (ms->metrics_listeners != NULL)
		listeners_close(ms->metrics_listeners);
	httpd_fini(ms->httpd);
	control_close(ms->control);
	qmgr_fini(ms->qmgr);
	outbound_fini(ms->outbound);
	if (ms->resolver != NULL)
		dns_resolver_free(ms->resolver);
	maildir_fini(ms->maildir);
	smtpd_fini(ms->smtpd);
	spool_close(ms->spool);
	log_sink_close(ms->log);   /* last: writes the stats line and whatever the rest logged */
}

/* The shards are set up (listeners bound, spool open, as root if started so): the spool and the
 * Maildir root go to mail_owner, and the process becomes it. Nothing has been served yet, so a
 * failure ends the process at once. */
static void
main_give_up_root(const struct main_world *w)
{
	char err[CONFIG_ERR_MAX];
	if (privilege_chown_tree(w->privilege, w->cfg->spool_dir, err, sizeof(err)) != 0
		|| privilege_chown_tree(w->privilege, w->cfg->maildir_root, err, sizeof(err)) != 0
		|| privilege_drop(w->privilege, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		exit(2);
	}
}

/* Spool directories of shards that no longer run (the spool was written with more): each is
 * taken in by shard n % shards, so no mail is stranded. */
static int
main_find_stranded(const struct config *cfg, struct main_shard *ms)
{
	DIR *d = opendir(cfg->spool_dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *end;
		errno = 0;
		unsigned long n = strtoul(de->d_name, &end, 10);
		if (*end != '\0' || end == de->d_name || errno != 0 || n < cfg->shards
			|| n >= QUEUE_ID_SHARD_MAX || de->d_type != DT_DIR)
			continue;
		struct main_shard *to = &ms[n % cfg->shards];
		to->adopt[to->adopt_count++] = (uint32_t)n;
	}
	closedir(d);
	return 0;
}

/* With metrics_listen: the shards' metrics slots, the SMTP listeners named as configured. */
static int
main_metrics_create(struct main_world *w)
{
	const struct config *cfg = w->cfg;
	if (cfg->metrics_listen_count == 0)
		return 0;
	static char names[CONFIG_LISTEN_MAX][CONFIG_ADDR_TEXT_MAX];
	const char *name_ptrs[CONFIG_LISTEN_MAX];
	for (uint32_t i = 0; i < cfg->listen_count; i++) {
		config_addr_format(&cfg->listen[i], names[i], sizeof(names[i]));
		name_ptrs[i] = names[i];
	}
	return metrics_create(cfg->shards, name_ptrs, cfg->listen_count, &w->metrics);
}

/* Readiness for systemd's Type=notify; a failure is logged, the daemon goes on. */
static void
main_notify(const char *state)
{
	int rc = notify_send(state);
	if (rc < 0)
		log_error(main_clock_real_ms(), "sd_notify", rc);
}

/* Waits for SIGTERM or SIGINT. SIGHUP (systemctl reload) reloads the TLS certificates and the
 * AUTH users (it must not end the daemon as its default action would). */
static void
main_wait_stop(struct main_world *w)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0 || sig != SIGHUP)
			return;
		char buf[LOG_LINE_MAX];
		struct log_line l;
		log_line_begin(&l, buf, sizeof(buf), main_clock_real_ms(), "sighup");
		log_line_str(&l, "reloaded", w->tls != NULL && w->passwd != NULL ? "tls,auth_users"
			: w->tls != NULL ? "tls" : w->passwd != NULL ? "auth_users" : "none");
		log_write(buf, log_line_end(&l));
		if (w->tls != NULL)
			main_tls_reload(w);
		if (w->passwd != NULL)
			main_passwd_reload(w);
	}
}

/* Runs the shards until SIGTERM or SIGINT, then stops them cleanly. */
static int
main_run(struct main_world *w)
{
	static struct shard shards[CONFIG_SHARDS_MAX];
	static struct main_shard ms[CONFIG_SHARDS_MAX];
	const struct config *cfg = w->cfg;
	uint32_t started = 0;
	/* The ring that tells the shards to stop exists from the start: at SIGTERM the descriptor
	 * table may be full (accepts wait for a free one), and the stop must not need one then. */
	struct io_uring ring;
	int rc = io_uring_queue_init(8, &ring, 0);
	if (rc < 0) {
		fprintf(stderr, "ringmta: io_uring: %s\n", strerror(-rc));
		return 1;
	}
	w->started_real_ms = main_clock_real_ms();
	rc = main_find_stranded(cfg, ms);
	if (rc < 0) {
		fprintf(stderr, "ringmta: %s: %s\n", cfg->spool_dir, strerror(-rc));
		return 1;
	}
	if (cfg->shards > 1) {
		struct xshard_config xc = { .shard_count = cfg->shards,
			.ring_slots = XSHARD_RING_SLOTS_DEFAULT, .backlog_slots = XSHARD_BACKLOG_DEFAULT };
		rc = xshard_create(&xc, &w->xshard);
		if (rc < 0) {
			fprintf(stderr, "ringmta: cross-shard rings: %s\n", strerror(-rc));
			return 1;
		}
	}
	rc = main_metrics_create(w);
	if (rc < 0) {
		fprintf(stderr, "ringmta: metrics: %s\n", strerror(-rc));
		return 1;
	}
	for (; started < cfg->shards; started++) {
		ms[started].w = w;
		struct shard_params p = { .max_connections = cfg->max_connections,
			.stop_grace_ms = MAIN_STOP_GRACE_MS, .setup = main_shard_setup,
			.teardown = main_shard_teardown, .loop_end = main_shard_loop_end,
			.ctx = &ms[started] };
		rc = shard_start(&shards[started], started, &p);
		if (rc < 0) {
			fprintf(stderr, "ringmta: shard %u: %s\n", started, strerror(-rc));
			break;
		}
	}
	if (rc == 0)
		main_give_up_root(w);
	for (uint32_t i = 0; i < started; i++)
		shard_serve(&shards[i]);
	if (rc == 0) {
		char line[LOG_LINE_MAX];
		log_write(line, config_format_started(line, sizeof(line), main_clock_real_ms(), cfg,
			started));
		main_notify("READY=1");
		main_wait_stop(w);
		main_notify("STOPPING=1");
	}
	for (uint32_t i = 0; i < started; i++)
		(void)shard_request_stop(&ring, &shards[i]);
	for (uint32_t i = 0; i < started; i++)
		shard_join(&shards[i]);
	if (w->workpool != NULL)   /* the shards waited for their jobs (smtpd's idle hook) */
		workpool_destroy(w->workpool);
	io_uring_queue_exit(&ring);
	if (w->xshard != NULL)
		xshard_destroy(w->xshard);
	if (w->metrics != NULL)
		metrics_destroy(w->metrics);
	return rc == 0 ? 0 : 1;
}

/* The parent directory of local_listen, for every user to reach the socket in (0755); the
 * directories above it must exist. */
static int
main_local_dir(const char *path)
{
	char dir[CONFIG_STR_MAX];
	const char *slash = strrchr(path, '/');
	if (slash == NULL || slash == path)
		return 0;
	size_t len = (size_t)(slash - path);
	memcpy(dir, path, len);
	dir[len] = '\0';
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "ringmta: local_listen: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* The command a program name or the first argument names: sendmail(1) and mailq under their
 * own names (symbolic links to ringmta), or `ringmta sendmail`, `ringmta passwd`,
 * `ringmta queue`. */
static int
main_subcommand(int argc, char **argv, bool *handled)
{
	const char *name = strrchr(argv[0], '/');
	name = name != NULL ? name + 1 : argv[0];
	*handled = true;
	if (strcmp(name, "sendmail") == 0)
		return sendmail_main(argc, argv);
	if (strcmp(name, "mailq") == 0)
		return sendmail_mailq(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "sendmail") == 0)
		return sendmail_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
		return passwd_cmd_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "queue") == 0)
		return queue_cmd_main(argc - 1, argv + 1);
	*handled = false;
	return 0;
}

/* Descriptors one shard holds besides its connections: its ring, its listeners, its spool, the
 * Maildir agent's (deliver/maildir.h MAILDIR_FDS_MAX) and some headroom. */
static uint64_t
main_fds_per_shard(const struct config *cfg)
{
	return 1u + cfg->listen_count + cfg->submission_listen_count + cfg->smtps_listen_count
		+ (cfg->local_listen[0] != '\0' ? 1u : 0u)
		+ MAIN_FDS_SPOOL + MAIN_FDS_SPOOL_SEGMENTS + MAILDIR_FDS_MAX + MAIN_FDS_HEADROOM;
}

/* One line when max_connections had to be lowered to fit the descriptor limit. */
static void
main_log_fd_limit(uint64_t nofile, uint64_t needed, uint32_t fit, uint32_t configured)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), main_clock_real_ms(), "fd_limit");
	log_line_u64(&l, "nofile", nofile);
	log_line_u64(&l, "needed", needed);
	log_line_u64(&l, "max_connections", fit);
	log_line_u64(&l, "configured", configured);
	log_write(buf, log_line_end(&l));
}

/* Raises the soft RLIMIT_NOFILE to what the shards need (at most to the hard limit); if that is
 * not enough, lowers max_connections to fit and logs it. Each shard's registered file table
 * (SHARD_FILES_MAX slots) also needs the soft limit at least that high. Returns 0, or -1 with a
 * message when not even the shards' fixed needs and one connection each fit. */
static int
main_fd_limit(struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		fprintf(stderr, "ringmta: RLIMIT_NOFILE: %s\n", strerror(errno));
		return -1;
	}
	uint64_t fixed = MAIN_FDS_PROCESS + (uint64_t)cfg->shards * main_fds_per_shard(cfg);
	uint64_t needed = fixed + (uint64_t)cfg->shards * cfg->max_connections;
	uint64_t least = fixed + cfg->shards > SHARD_FILES_MAX ? fixed + cfg->shards
		: SHARD_FILES_MAX;
	uint64_t want = needed < (uint64_t)rl.rlim_max ? needed : (uint64_t)rl.rlim_max;
	if ((uint64_t)rl.rlim_cur < want) {
		rl.rlim_cur = (rlim_t)want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			fprintf(stderr, "ringmta: RLIMIT_NOFILE to %llu: %s\n", (unsigned long long)want,
				strerror(errno));
			return -1;
		}
	}
	uint64_t nofile = rl.rlim_cur;
	if (needed <= nofile)
		return 0;
	if (nofile < least) {
		fprintf(stderr, "ringmta: RLIMIT_NOFILE: the hard limit of %llu descriptors is below the "
			"%llu that %u shards need with one connection each (raise it with ulimit -Hn, or "
			"lower shards)\n", (unsigned long long)rl.rlim_max, (unsigned long long)least,
			cfg->shards);
		return -1;
	}
	uint32_t fit = (uint32_t)((nofile - fixed) / cfg->shards);
	main_log_fd_limit(nofile, needed, fit, cfg->max_connections);
	cfg->max_connections = fit;
	return 0;
}

/* --check-config, --print-sample, --print-man-keys: print, and exit with this status. */
static int
main_print(enum main_mode mode, const struct config *cfg)
{
	if (mode == MAIN_MODE_CHECK) {
		config_print(cfg, stdout);
		return 0;
	}
	int rc = mode == MAIN_MODE_SAMPLE ? config_print_sample(cfg, stdout)
		: config_print_man(stdout);
	return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	enum main_mode mode = MAIN_MODE_RUN;
	bool handled;
	int sub = main_subcommand(argc, argv, &handled);
	if (handled)
		return sub;
	if (main_config(argc, argv, &cfg, &mode) != 0)
		return 2;
	if (mode != MAIN_MODE_RUN)
		return main_print(mode, &cfg);
	char err[CONFIG_ERR_MAX];
	static struct privilege privilege;
	if (privilege_resolve(cfg.mail_owner, &privilege, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	static struct policy policy;
	if (policy_init(&policy, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	static struct route route;
	if (route_init(&route, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	log_set_format((enum log_format)cfg.log_format);
	if (log_open(cfg.log_file, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	if (main_fd_limit(&cfg) != 0)
		return 2;
	if (main_lock_spool(cfg.spool_dir) < 0)
		return 2;
	int rc = main_mkdirs(cfg.maildir_root);
	if (rc < 0) {
		fprintf(stderr, "ringmta: %s: %s\n", cfg.maildir_root, strerror(-rc));
		return 2;
	}
	if (main_local_dir(cfg.local_listen) != 0)
		return 2;
	rc = notify_open();   /* as root: the notify socket need not be mail_owner's */
	if (rc < 0)
		log_error(main_clock_real_ms(), "sd_notify", rc);
	/* Blocked in every thread: the main thread takes them with sigwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	static struct main_world world;
	world.cfg = &cfg;
	world.route = &route;
	if (main_world_security(&world, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	main_world_init(&world, &cfg, &policy, &privilege);
	world.dns_ok = dns_resolver_config_from(&cfg, MAIN_RESOLV_CONF, &world.dns, err,
		sizeof(err)) == 0;
	if (!world.dns_ok)   /* local delivery works without; remote lookups defer */
		log_error(main_clock_real_ms(), err, -ENOENT);
	rc = main_run(&world);
	if (world.tls != NULL) {
		tls_server_slot_fini(world.tls);
		tls_tickets_free(world.tickets);
	}
	if (world.tls_client != NULL)
		tls_client_ctx_unref(world.tls_client);
	if (world.passwd != NULL)
		passwd_slot_fini(world.passwd);
	route_fini(&route);
	policy_fini(&policy);
	return rc;
}
