/* src/main.c - ringmta: configuration, start-up checks, shards, signals. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/conn.h"
#include "engine/shard.h"
#include "conf/config.h"
#include "base/log.h"
#include "conf/policy.h"
#include "src/passwd_cmd.h"

#define MAIN_OVERRIDES_MAX 64u

static void
main_usage(FILE *f)
{
	fprintf(f, "usage: ringmta [-c FILE] [-o key=value]... [--check-config]\n"
		"       ringmta passwd USER   (prints an auth_users_file line)\n"
		"  -c FILE          configuration file of key = value lines\n"
		"  -o key=value     override one key (after the file; may repeat)\n"
		"  --check-config   print the effective configuration and exit\n");
}

/* Reads the configuration from the default, the file and the overrides, in that order. */
static int
main_config(int argc, char **argv, struct config *cfg, bool *check_only)
{
	char err[CONFIG_ERR_MAX];
	const char *file = NULL;
	const char *overrides[MAIN_OVERRIDES_MAX];
	uint32_t override_count = 0;
	config_default(cfg);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc
			&& override_count < MAIN_OVERRIDES_MAX) {
			overrides[override_count++] = argv[++i];
		} else if (strcmp(argv[i], "--check-config") == 0) {
			*check_only = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			main_usage(stdout);
			exit(0);
		} else {
			main_usage(stderr);
			return -1;
		}
	}
	if (file != NULL && config_load_file(cfg, file, err, sizeof(err)) != 0)
		goto fail;
	for (uint32_t i = 0; i < override_count; i++) {
		if (config_set(cfg, overrides[i], err, sizeof(err)) != 0)
			goto fail;
	}
	if (config_check(cfg, err, sizeof(err)) != 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "ringmta: %s\n", err);
	return -1;
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

static void
main_smtp_config(struct engine *eng, const struct config *cfg)
{
	eng->smtp = (struct smtp_server_config){
		.hostname = slice_make(cfg->myhostname, strlen(cfg->myhostname)),
		.max_message_size = cfg->max_message_size,
		.max_recipients = cfg->max_recipients,
		.bad_cmd_max = cfg->bad_cmd_max,
		.cmd_timeout_ms = cfg->cmd_timeout_ms,
		.data_timeout_ms = cfg->data_timeout_ms,
		.rcpt_check = conn_rcpt_check,
		.starttls_offered = false,
	};
}

static uint64_t
main_clock_real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the shards until SIGTERM or SIGINT, then stops them cleanly. */
static int
main_run(struct engine *eng)
{
	static struct shard shards[CONFIG_SHARDS_MAX];
	uint32_t started = 0;
	int rc = 0;
	for (; started < eng->shard_count; started++) {
		rc = shard_start(&shards[started], eng, started);
		if (rc < 0) {
			fprintf(stderr, "ringmta: shard %u: %s\n", started, strerror(-rc));
			break;
		}
	}
	if (rc == 0) {
		char line[LOG_LINE_MAX];
		log_write(line, config_format_started(line, sizeof(line), main_clock_real_ms(),
			eng->cfg, started));
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		int sig = 0;
		(void)sigwait(&set, &sig);
	}
	struct io_uring ring;
	int ring_rc = io_uring_queue_init(8, &ring, 0);
	for (uint32_t i = 0; i < started; i++) {
		if (ring_rc == 0)
			(void)shard_request_stop(&ring, &shards[i]);
		shard_join(&shards[i]);
	}
	if (ring_rc == 0)
		io_uring_queue_exit(&ring);
	return rc == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	bool check_only = false;
	if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
		return passwd_cmd_main(argc - 1, argv + 1);
	if (main_config(argc, argv, &cfg, &check_only) != 0)
		return 2;
	if (check_only) {
		config_print(&cfg, stdout);
		return 0;
	}
	char err[CONFIG_ERR_MAX];
	static struct policy policy;
	if (policy_init(&policy, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	if (log_open(cfg.log_file, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta: %s\n", err);
		return 2;
	}
	if (main_lock_spool(cfg.spool_dir) < 0)
		return 2;
	int rc = main_mkdirs(cfg.maildir_root);
	if (rc < 0) {
		fprintf(stderr, "ringmta: %s: %s\n", cfg.maildir_root, strerror(-rc));
		return 2;
	}
	/* Blocked in every thread: the main thread takes them with sigwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct engine eng = { .cfg = &cfg, .policy = &policy, .shard_count = cfg.shards };
	main_smtp_config(&eng, &cfg);
	rc = main_run(&eng);
	policy_fini(&policy);
	return rc;
}
