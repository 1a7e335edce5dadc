/* conf/config.h - the daemon's configuration: `key = value` lines, -o overrides, embedded default.
 *
 * Loaded once at start-up, range-checked, then frozen: the only global the shards share, and only
 * for reading. Lists (listen addresses, domains, networks) are parsed into fixed arrays here so
 * that nothing on the hot path parses text. Errors name the file, the line and the key.
 *
 * Not done here: reading local_users_file (conf/policy), opening listeners (engine/). */
#ifndef RINGMTA_CONF_CONFIG_H
#define RINGMTA_CONF_CONFIG_H
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define CONFIG_LISTEN_MAX        16u
#define CONFIG_DOMAINS_MAX      256u
#define CONFIG_NETWORKS_MAX     256u
#define CONFIG_STR_MAX         1024u   /* paths and names */
#define CONFIG_LINE_LEN_MAX    4096u
#define CONFIG_SHARDS_MAX        64u
#define CONFIG_ERR_MAX          512u
#define CONFIG_DNS_SERVERS_MAX    8u
#define CONFIG_FILE_SIZE_MAX   (1u << 20)   /* a larger configuration file is refused */
#define CONFIG_UNIX_PATH_MAX    107u   /* local_listen: sun_path of struct sockaddr_un, less NUL */
#define CONFIG_USER_LEN_MAX      32u   /* a user name (useradd's limit) */

/* Ranges of the numeric keys, checked at load (each tested at and past its bounds). The
 * defaults of max_recipients, bad_cmd_max and the timeouts are proto/smtp_server.h's. */
#define CONFIG_MESSAGE_SIZE_MIN         1024ull
/* 1000 MiB: a spool record holds 1 GiB (queue/record.h RECORD_PAYLOAD_MAX), the envelope (at
 * most 8.2 MB) and the Received: header included; queue/record.c checks this at compile time. */
#define CONFIG_MESSAGE_SIZE_MAX         (1000ull << 20)
#define CONFIG_MESSAGE_SIZE_DEFAULT     (50ull << 20)   /* 50 MiB */
#define CONFIG_CONNECTIONS_MAX          100000u         /* per shard */
#define CONFIG_CONNECTIONS_DEFAULT      10000u
#define CONFIG_BAD_CMD_MAX_MAX          1000u
#define CONFIG_TIMEOUT_MAX_S            3600u           /* cmd_timeout, data_timeout */
#define CONFIG_QUEUE_LIFETIME_MAX_S     (365u * 86400u)
#define CONFIG_QUEUE_LIFETIME_DEFAULT_S (5u * 86400u)
#define CONFIG_MINIMAL_BACKOFF_DEFAULT_S 300u           /* Postfix's minimal_backoff_time */
#define CONFIG_MAXIMAL_BACKOFF_DEFAULT_S 4000u          /* Postfix's maximal_backoff_time */
#define CONFIG_REMOTE_SMTP_PORT_DEFAULT 25u
#define CONFIG_DNS_PORT_DEFAULT         53u
#define CONFIG_MAIL_OWNER_DEFAULT       "ringmta"
#define CONFIG_DNS_TIMEOUT_MAX_S        30u             /* glibc's RES_MAXRETRANS is 30 s too */
#define CONFIG_DNS_ATTEMPTS_MAX         5u              /* glibc's RES_MAXRETRY */
#define CONFIG_DNS_CACHE_MAX_MAX        1000000u        /* entries per shard */
#define CONFIG_DNS_CACHE_MAX_DEFAULT    50000u
/* Outbound delivery (deliver/outbound.h); names as in the issue, units as Postfix's. */
#define CONFIG_DEST_CONCURRENCY_MAX     1000u           /* connections per destination */
#define CONFIG_DEST_CONCURRENCY_DEFAULT 20u             /* Postfix's default too */
#define CONFIG_DEST_RCPT_DEFAULT        50u             /* recipients per transaction */
#define CONFIG_REUSE_LIMIT_MAX          100000u         /* messages per connection */
#define CONFIG_REUSE_LIMIT_DEFAULT      100u
#define CONFIG_DEST_RATE_MAX            100000u         /* messages per second; 0: no limit */
#define CONFIG_OUT_CONNECTIONS_DEFAULT  1000u           /* outbound, all shards together */
#define CONFIG_IDLE_TIME_DEFAULT_MS     2000u           /* an idle connection waits, then QUIT */
#define CONFIG_MX_ADDRESS_LIMIT_MAX     16u             /* addresses tried per attempt */
#define CONFIG_MX_ADDRESS_LIMIT_DEFAULT 5u              /* Postfix's smtp_mx_address_limit */
#define CONFIG_CONNECT_TIMEOUT_DEFAULT_MS 30000u        /* Postfix's smtp_connect_timeout */

/* inet_protocols (Postfix's key and values): the address families used for outbound mail. */
enum config_inet {
	CONFIG_INET_IPV4 = 1,
	CONFIG_INET_IPV6 = 2,
	CONFIG_INET_ALL = CONFIG_INET_IPV4 | CONFIG_INET_IPV6,
};

/* maildir_sync: how a Maildir delivery is made durable before it is marked delivered. */
enum config_maildir_sync {
	CONFIG_MAILDIR_SYNC_AUTO,        /* syncfs on ext4, xfs, btrfs; fsync anywhere else */
	CONFIG_MAILDIR_SYNC_FSYNC,       /* fdatasync of each file, then fsync of each new/ */
	CONFIG_MAILDIR_SYNC_SYNCFS,      /* one syncfs(2) of the whole file system per batch */
};
#define CONFIG_MAILDIR_SYNC_DEFAULT CONFIG_MAILDIR_SYNC_AUTO

/* smtp_tls_security_level (Postfix's names): outbound TLS. */
enum config_tls_level {
	CONFIG_TLS_NONE,      /* never STARTTLS */
	CONFIG_TLS_MAY,       /* STARTTLS when offered, certificate not checked; clear text otherwise */
	CONFIG_TLS_ENCRYPT,   /* TLS or defer, certificate not checked */
	CONFIG_TLS_VERIFY,    /* TLS or defer, certificate chain to smtp_tls_ca_file and MX name */
};

struct config_addr {
	struct sockaddr_storage sa;     /* AF_INET or AF_INET6, port set */
	socklen_t sa_len;
};

struct config_network {            /* CIDR: address and prefix length */
	int family;                     /* AF_INET or AF_INET6 */
	uint8_t addr[16];               /* network byte order; IPv4 in the first 4 bytes */
	uint8_t prefix_len;
};

struct config {
	struct config_addr listen[CONFIG_LISTEN_MAX];
	uint32_t listen_count;
	struct config_addr submission_listen[CONFIG_LISTEN_MAX];
	uint32_t submission_listen_count;
	struct config_addr smtps_listen[CONFIG_LISTEN_MAX];
	uint32_t smtps_listen_count;
	char local_listen[CONFIG_STR_MAX];   /* Unix socket for `ringmta sendmail`; empty: none */

	char myhostname[256];
	char local_domains[CONFIG_DOMAINS_MAX][256];   /* lower case */
	uint32_t local_domain_count;
	char local_users_file[CONFIG_STR_MAX];          /* empty: every local part exists */
	char maildir_root[CONFIG_STR_MAX];
	char spool_dir[CONFIG_STR_MAX];
	char mail_owner[CONFIG_USER_LEN_MAX + 1];      /* started as root: the user to run as */
	struct config_network relay_networks[CONFIG_NETWORKS_MAX];
	uint32_t relay_network_count;

	char tls_cert_file[CONFIG_STR_MAX];             /* chain, leaf first: RSA or ECDSA */
	char tls_key_file[CONFIG_STR_MAX];
	char tls_eccert_file[CONFIG_STR_MAX];           /* a second pair: ECDSA (Postfix's eccert) */
	char tls_eckey_file[CONFIG_STR_MAX];
	char tls_server_sni_file[CONFIG_STR_MAX];       /* "name pem-file [pem-file]" lines */
	char smtp_tls_ca_file[CONFIG_STR_MAX];          /* empty: the system store (ca-certificates) */
	uint8_t smtp_tls_security_level;                /* enum config_tls_level, default may */
	char auth_users_file[CONFIG_STR_MAX];
	char dns_servers[CONFIG_STR_MAX];               /* empty: /etc/resolv.conf */
	uint32_t dns_timeout_ms;         /* per query attempt; 0: resolv.conf's, else 5 s */
	uint32_t dns_attempts;           /* rounds over the servers; 0: resolv.conf's, else 2 */
	uint32_t dns_cache_max;          /* cached DNS answers per shard (0: no cache) */
	uint32_t inet_protocols;         /* enum config_inet */
	uint16_t remote_smtp_port;
	char relayhost[CONFIG_STR_MAX];
	char transport_maps[CONFIG_STR_MAX];            /* a file of "domain [host]:port" lines */
	char destination_policy_file[CONFIG_STR_MAX];   /* per-destination limits */
	uint32_t dest_concurrency_limit;  /* connections per destination at once */
	uint32_t dest_recipient_limit;    /* recipients per transaction */
	uint32_t connection_reuse_limit;  /* messages per connection */
	uint32_t dest_rate_limit;         /* messages per second per destination, 0: none */
	uint32_t outbound_connection_limit;   /* outbound connections, all shards together */
	uint32_t connection_idle_ms;      /* an idle reusable connection waits this long */
	uint32_t smtp_mx_address_limit;   /* addresses tried per attempt (0 in the file: the max) */
	uint32_t smtp_connect_timeout_ms;

	uint64_t max_message_size;       /* octets */
	uint32_t max_recipients;
	uint32_t max_connections;        /* per shard */
	uint32_t bad_cmd_max;
	uint32_t cmd_timeout_ms;
	uint32_t data_timeout_ms;
	uint32_t shards;                 /* 0 in the file means: online CPUs (resolved at load) */
	uint32_t queue_lifetime_s;       /* bounce after this long in the queue (default 5 days) */
	uint32_t minimal_backoff_s;      /* the least wait before another attempt */
	uint32_t maximal_backoff_s;      /* the longest */
	uint32_t delay_warning_s;        /* a "delayed" notice after this long (0: never) */
	char log_file[CONFIG_STR_MAX];   /* empty: stderr */
	enum config_maildir_sync maildir_sync;

	/* Parsed forms of dns_servers and relayhost (the text fields above keep the normalised
	 * text that config_print writes). */
	struct config_addr dns[CONFIG_DNS_SERVERS_MAX];  /* port 53 unless given */
	uint32_t dns_server_count;                       /* 0: use /etc/resolv.conf */
	char relayhost_name[256];        /* host name or IP address, no brackets; empty: none */
	uint16_t relayhost_port;         /* 0: not given, use remote_smtp_port */
	bool relayhost_mx;               /* no brackets: look up the MX records of relayhost_name */
};

/* Fills cfg with the embedded default: SMTP on 127.0.0.1:2525, spool ./var/spool, Maildir
 * ./var/mail, local domain localhost, no relay networks, shards = online CPUs, mail_owner
 * ringmta. */
void config_default(struct config *cfg);

/* Applies a file of `key = value` lines over cfg. A line whose first non-blank character is '#'
 * is a comment; there are no comments after a value (a '#' after a blank in a value is refused,
 * so that "spool_dir = /x # old" cannot become a path). Unknown keys are errors; a repeated key:
 * the last one wins. All or nothing: on error cfg is unchanged. Returns 0, or -1 with a message
 * naming file, line and key in err ("ringmta.conf:12: max_recipients: 5000 is out of range"). */
int config_load_file(struct config *cfg, const char *path, char *err, size_t err_len);

/* Applies the `key = value` lines of buf[0..len) over cfg; name is the file name shown in errors.
 * All or nothing: on error cfg is unchanged. Returns 0, or -1 with a message in err. */
int config_load_buf(struct config *cfg, const char *name, const char *buf, size_t len, char *err,
	size_t err_len);

/* Applies one `key=value` (-o) with the same parser. Returns 0, or -1 with a message in err. */
int config_set(struct config *cfg, const char *key_value, char *err, size_t err_len);

/* Cross-key checks after all sources are applied. Returns 0, or -1 with a message in err. */
int config_check(const struct config *cfg, char *err, size_t err_len);

/* Prints the effective configuration as a loadable `key = value` file: every key, in a form that
 * config_load_file reads back to an identical struct config. */
void config_print(const struct config *cfg, FILE *f);
/* Prints the sample configuration file: every key with its one line of meaning; a key whose
 * value in cfg differs from the embedded default is set (with its default in a comment), the
 * others are commented out showing their default. Returns 0, or -1 when out of memory. */
int config_print_sample(const struct config *cfg, FILE *f);

/* Prints every key, its meaning and its default as roff .TP paragraphs, for ringmta.conf(5).
 * Returns 0, or -1 when out of memory. */
int config_print_man(FILE *f);

/* The "started" log line: shards, myhostname, the listen lists and spool_dir. Returns its length
 * (cap >= LOG_LINE_MIN). */
size_t config_format_started(char *buf, size_t cap, uint64_t now_ms, const struct config *cfg,
	uint32_t shard_count);
#endif
