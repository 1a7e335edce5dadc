/* conf/config.c - `key = value` configuration, -o overrides, embedded default; see config.h.
 *
 * One table names every key with its kind, its field and its range; the parser, the printer and
 * the default all go through it, so a key cannot be readable but unprintable or the reverse. */
#include "conf/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/log.h"
#include "base/slice.h"
#include "proto/smtp_server.h"

#define CONFIG_WHY_MAX        256u   /* the reason, before "file:line: key: " is put in front */
#define CONFIG_ECHO_MAX        64u   /* octets of a bad value quoted back in a message */
#define CONFIG_DOMAIN_LEN_MAX 253u   /* RFC 1035 2.3.4, without the trailing dot */
#define CONFIG_LABEL_LEN_MAX   63u
#define CONFIG_HOST_TEXT_MAX   64u   /* an IP address as text, with room to spare */

_Static_assert(CONFIG_DOMAIN_LEN_MAX < sizeof(((struct config *)0)->local_domains[0]),
	"a domain and its NUL fit a local_domains entry");
_Static_assert(CONFIG_DOMAIN_LEN_MAX < sizeof(((struct config *)0)->myhostname),
	"a host name and its NUL fit myhostname");
_Static_assert(SMTP_TIMEOUT_CMD_MS <= CONFIG_TIMEOUT_MAX_S * 1000u, "default in range");
_Static_assert(SMTP_TIMEOUT_DATA_MS <= CONFIG_TIMEOUT_MAX_S * 1000u, "default in range");
_Static_assert(CONFIG_LINE_LEN_MAX <= CONFIG_FILE_SIZE_MAX, "a line fits in a file");

/* The embedded default, read by the same parser as a file; myhostname and shards depend on the
 * machine and the numbers on proto/smtp_server.h, so config_default sets those itself. */
static const char config_default_text[] =
	"listen = 127.0.0.1:2525\n"
	"spool_dir = ./var/spool\n"
	"maildir_root = ./var/mail\n"
	"local_domains = localhost\n"
	"mail_owner = " CONFIG_MAIL_OWNER_DEFAULT "\n";

enum config_kind {
	CONFIG_KIND_ADDRS,       /* listen lists: ip:port, [ipv6]:port; min is the least count */
	CONFIG_KIND_HOSTNAME,
	CONFIG_KIND_DOMAINS,
	CONFIG_KIND_PATH,
	CONFIG_KIND_USER,        /* a user name, as getpwnam takes it */
	CONFIG_KIND_NETWORKS,
	CONFIG_KIND_SIZE,        /* uint64_t octets, k/m/g suffix */
	CONFIG_KIND_COUNT,       /* uint32_t */
	CONFIG_KIND_PORT,        /* uint16_t */
	CONFIG_KIND_TIMEOUT,     /* uint32_t milliseconds, written in seconds with s/m/h/d */
	CONFIG_KIND_LIFETIME,    /* uint32_t seconds, s/m/h/d */
	CONFIG_KIND_SHARDS,
	CONFIG_KIND_RELAYHOST,
	CONFIG_KIND_DNS,
	CONFIG_KIND_MAILDIR_SYNC, /* fsync | syncfs */
	CONFIG_KIND_LOG_FORMAT,  /* uint32_t enum log_format: text | json */
	CONFIG_KIND_INET,        /* all, ipv4, ipv6, "ipv4, ipv6" (Postfix inet_protocols) */
	CONFIG_KIND_TLS_LEVEL,   /* uint8_t enum config_tls_level */
	CONFIG_KIND_BOOL,        /* bool: yes | no */
};

struct config_key {
	const char *name;
	enum config_kind kind;
	size_t offset;           /* of the field in struct config */
	size_t count_offset;     /* lists: of their uint32_t count */
	uint64_t min;
	uint64_t max;
	const char *max_why;     /* numbers: why max is the bound, for the message (or NULL) */
};

#define CONFIG_F(field) offsetof(struct config, field)
#define CONFIG_LIST(name, kind, field, least) \
	{ name, kind, CONFIG_F(field), CONFIG_F(field##_count), least, 0, NULL }
#define CONFIG_VALUE(name, kind, field, min, max) { name, kind, CONFIG_F(field), 0, min, max, NULL }

static const struct config_key config_keys[] = {
	CONFIG_LIST("listen", CONFIG_KIND_ADDRS, listen, 1),
	CONFIG_LIST("submission_listen", CONFIG_KIND_ADDRS, submission_listen, 0),
	CONFIG_LIST("smtps_listen", CONFIG_KIND_ADDRS, smtps_listen, 0),
	CONFIG_LIST("metrics_listen", CONFIG_KIND_ADDRS, metrics_listen, 0),
	CONFIG_VALUE("local_listen", CONFIG_KIND_PATH, local_listen, 0, 0),
	CONFIG_VALUE("myhostname", CONFIG_KIND_HOSTNAME, myhostname, 0, 0),
	{ "local_domains", CONFIG_KIND_DOMAINS, CONFIG_F(local_domains),
		CONFIG_F(local_domain_count), 0, 0, NULL },
	CONFIG_VALUE("local_users_file", CONFIG_KIND_PATH, local_users_file, 0, 0),
	CONFIG_VALUE("maildir_root", CONFIG_KIND_PATH, maildir_root, 0, 0),
	CONFIG_VALUE("spool_dir", CONFIG_KIND_PATH, spool_dir, 0, 0),
	CONFIG_VALUE("control_socket", CONFIG_KIND_PATH, control_socket, 0, 0),
	CONFIG_VALUE("mail_owner", CONFIG_KIND_USER, mail_owner, 0, 0),
	{ "relay_networks", CONFIG_KIND_NETWORKS, CONFIG_F(relay_networks),
		CONFIG_F(relay_network_count), 0, 0, NULL },
	CONFIG_VALUE("tls_cert_file", CONFIG_KIND_PATH, tls_cert_file, 0, 0),
	CONFIG_VALUE("tls_key_file", CONFIG_KIND_PATH, tls_key_file, 0, 0),
	CONFIG_VALUE("tls_eccert_file", CONFIG_KIND_PATH, tls_eccert_file, 0, 0),
	CONFIG_VALUE("tls_eckey_file", CONFIG_KIND_PATH, tls_eckey_file, 0, 0),
	CONFIG_VALUE("tls_server_sni_file", CONFIG_KIND_PATH, tls_server_sni_file, 0, 0),
	CONFIG_VALUE("smtp_tls_security_level", CONFIG_KIND_TLS_LEVEL, smtp_tls_security_level,
		0, 0),
	CONFIG_VALUE("smtp_tls_ca_file", CONFIG_KIND_PATH, smtp_tls_ca_file, 0, 0),
	CONFIG_VALUE("auth_users_file", CONFIG_KIND_PATH, auth_users_file, 0, 0),
	CONFIG_VALUE("submission_sender_check", CONFIG_KIND_BOOL, submission_sender_check, 0, 0),
	{ "max_message_size", CONFIG_KIND_SIZE, CONFIG_F(max_message_size), 0,
		CONFIG_MESSAGE_SIZE_MIN, CONFIG_MESSAGE_SIZE_MAX,
		"a spool record holds 1 GiB, envelope and Received: header included" },
	CONFIG_VALUE("max_recipients", CONFIG_KIND_COUNT, max_recipients, 1, SMTP_RCPT_COUNT_MAX),
	{ "dns_servers", CONFIG_KIND_DNS, CONFIG_F(dns), CONFIG_F(dns_server_count), 0, 0, NULL },
	CONFIG_VALUE("dns_timeout", CONFIG_KIND_TIMEOUT, dns_timeout_ms, 0,
		CONFIG_DNS_TIMEOUT_MAX_S),
	CONFIG_VALUE("dns_attempts", CONFIG_KIND_COUNT, dns_attempts, 0, CONFIG_DNS_ATTEMPTS_MAX),
	CONFIG_VALUE("dns_cache_max", CONFIG_KIND_COUNT, dns_cache_max, 0,
		CONFIG_DNS_CACHE_MAX_MAX),
	CONFIG_VALUE("inet_protocols", CONFIG_KIND_INET, inet_protocols, 0, 0),
	CONFIG_VALUE("remote_smtp_port", CONFIG_KIND_PORT, remote_smtp_port, 1, 65535),
	CONFIG_VALUE("relayhost", CONFIG_KIND_RELAYHOST, relayhost, 0, 0),
	CONFIG_VALUE("transport_maps", CONFIG_KIND_PATH, transport_maps, 0, 0),
	CONFIG_VALUE("destination_policy_file", CONFIG_KIND_PATH, destination_policy_file, 0, 0),
	CONFIG_VALUE("destination_concurrency_limit", CONFIG_KIND_COUNT, dest_concurrency_limit, 1,
		CONFIG_DEST_CONCURRENCY_MAX),
	CONFIG_VALUE("destination_recipient_limit", CONFIG_KIND_COUNT, dest_recipient_limit, 1,
		SMTP_RCPT_COUNT_MAX),
	CONFIG_VALUE("connection_reuse_limit", CONFIG_KIND_COUNT, connection_reuse_limit, 1,
		CONFIG_REUSE_LIMIT_MAX),
	CONFIG_VALUE("destination_rate_limit", CONFIG_KIND_COUNT, dest_rate_limit, 0,
		CONFIG_DEST_RATE_MAX),
	CONFIG_VALUE("outbound_connection_limit", CONFIG_KIND_COUNT, outbound_connection_limit, 1,
		CONFIG_CONNECTIONS_MAX),
	CONFIG_VALUE("connection_idle_time", CONFIG_KIND_TIMEOUT, connection_idle_ms, 0,
		CONFIG_TIMEOUT_MAX_S),
	CONFIG_VALUE("smtp_mx_address_limit", CONFIG_KIND_COUNT, smtp_mx_address_limit, 0,
		CONFIG_MX_ADDRESS_LIMIT_MAX),
	CONFIG_VALUE("smtp_connect_timeout", CONFIG_KIND_TIMEOUT, smtp_connect_timeout_ms, 1,
		CONFIG_TIMEOUT_MAX_S),
	CONFIG_VALUE("shards", CONFIG_KIND_SHARDS, shards, 1, CONFIG_SHARDS_MAX),
	CONFIG_VALUE("max_connections", CONFIG_KIND_COUNT, max_connections, 1,
		CONFIG_CONNECTIONS_MAX),
	CONFIG_VALUE("bad_cmd_max", CONFIG_KIND_COUNT, bad_cmd_max, 1, CONFIG_BAD_CMD_MAX_MAX),
	CONFIG_VALUE("cmd_timeout", CONFIG_KIND_TIMEOUT, cmd_timeout_ms, 1, CONFIG_TIMEOUT_MAX_S),
	CONFIG_VALUE("data_timeout", CONFIG_KIND_TIMEOUT, data_timeout_ms, 1, CONFIG_TIMEOUT_MAX_S),
	CONFIG_VALUE("queue_lifetime", CONFIG_KIND_LIFETIME, queue_lifetime_s, 1,
		CONFIG_QUEUE_LIFETIME_MAX_S),
	CONFIG_VALUE("minimal_backoff_time", CONFIG_KIND_LIFETIME, minimal_backoff_s, 1,
		CONFIG_QUEUE_LIFETIME_MAX_S),
	CONFIG_VALUE("maximal_backoff_time", CONFIG_KIND_LIFETIME, maximal_backoff_s, 1,
		CONFIG_QUEUE_LIFETIME_MAX_S),
	CONFIG_VALUE("delay_warning_time", CONFIG_KIND_LIFETIME, delay_warning_s, 0,
		CONFIG_QUEUE_LIFETIME_MAX_S),
	CONFIG_VALUE("log_file", CONFIG_KIND_PATH, log_file, 0, 0),
	CONFIG_VALUE("log_format", CONFIG_KIND_LOG_FORMAT, log_format, 0, 0),
	CONFIG_VALUE("maildir_sync", CONFIG_KIND_MAILDIR_SYNC, maildir_sync, 0, 0),
};

/* One line of meaning per key, for the sample configuration and ringmta.conf(5)
 * (config_print_sample, config_print_man): the same keys as config_keys, in the same order;
 * config_doc_find asserts that every key has its line. A default that depends on the machine is
 * shown as `shown` instead of this machine's value. */
static const struct config_doc {
	const char *name;
	const char *meaning;
	const char *shown;       /* NULL: the embedded default's value */
} config_docs[] = {
	{ "listen", "inbound SMTP addresses, e.g. 0.0.0.0:25, [::]:25", NULL },
	{ "submission_listen", "port 587 addresses: STARTTLS, then AUTH before MAIL (needs a "
		"certificate and auth_users_file)", NULL },
	{ "smtps_listen", "port 465 addresses, implicit TLS (needs a certificate)", NULL },
	{ "metrics_listen", "addresses of the Prometheus endpoint (HTTP GET /metrics); empty: off",
		NULL },
	{ "local_listen", "Unix socket where `ringmta sendmail` hands in local mail (may relay); "
		"empty: none", NULL },
	{ "myhostname", "name in the greeting, EHLO, Received: and Maildir file names",
		"(this host's name)" },
	{ "local_domains", "domains delivered to Maildir", NULL },
	{ "local_users_file", "one local part per line; empty: every local part exists "
		"(postmaster always does)", NULL },
	{ "maildir_root", "mail for user@<local domain> goes to <maildir_root>/user/{tmp,new,cur}",
		NULL },
	{ "spool_dir", "the queue", NULL },
	{ "control_socket", "the Unix socket of `ringmta queue` (shard n > 0: <control_socket>.n), "
		"mode 0600; empty: <spool_dir>/control", NULL },
	{ "mail_owner", "started as root: the user that owns the spool and Maildirs and runs the "
		"daemon once its sockets are bound", NULL },
	{ "relay_networks", "client networks (CIDR) allowed to relay; none by default", NULL },
	{ "tls_cert_file", "server certificate chain, leaf first (RSA or ECDSA)", NULL },
	{ "tls_key_file", "the key of tls_cert_file", NULL },
	{ "tls_eccert_file", "a second, ECDSA certificate chain (Postfix's smtpd_tls_eccert_file)",
		NULL },
	{ "tls_eckey_file", "the key of tls_eccert_file", NULL },
	{ "tls_server_sni_file", "lines `name pem-file [pem-file]`: certificates by SNI name", NULL },
	{ "smtp_tls_security_level", "outbound STARTTLS: none, may, encrypt or verify (a "
		"destination_policy_file tls= overrides it)", NULL },
	{ "smtp_tls_ca_file", "CA certificates for verify; empty: the system's", NULL },
	{ "auth_users_file", "AUTH users, `user:{CRYPT}$y$...` lines (`ringmta passwd USER`); "
		"read again on SIGHUP", NULL },
	{ "submission_sender_check", "yes: after AUTH on 587/465, MAIL FROM is the user name or <>",
		NULL },
	{ "max_message_size", "octets (k, m, g suffixes), advertised as SIZE", NULL },
	{ "max_recipients", "per message (RFC 5321 4.5.3.1.8: at least 100)", NULL },
	{ "dns_servers", "resolver addresses, ip[:port]; empty: /etc/resolv.conf's nameservers",
		NULL },
	{ "dns_timeout", "seconds per DNS query attempt; 0: resolv.conf's, else 5", NULL },
	{ "dns_attempts", "rounds over the DNS servers; 0: resolv.conf's, else 2", NULL },
	{ "dns_cache_max", "cached DNS answers per shard (0: no cache)", NULL },
	{ "inet_protocols", "address families for outbound mail: all, ipv4, ipv6", NULL },
	{ "remote_smtp_port", "the port of MX hosts and of next hops without a port", NULL },
	{ "relayhost", "all non-local mail to one next hop: [host]:port, [host], host:port or host",
		NULL },
	{ "transport_maps", "a file of `domain nexthop` lines, overriding relayhost per domain",
		NULL },
	{ "destination_policy_file", "per-destination limits and TLS level, e.g. "
		"`.example.com concurrency=5 tls=encrypt`", NULL },
	{ "destination_concurrency_limit", "connections at once per destination", NULL },
	{ "destination_recipient_limit", "recipients per transaction", NULL },
	{ "connection_reuse_limit", "messages per connection, then QUIT and a new one", NULL },
	{ "destination_rate_limit", "messages per second per destination (0: no limit)", NULL },
	{ "outbound_connection_limit", "outbound connections of all shards together", NULL },
	{ "connection_idle_time", "an idle outbound connection waits this long for more work",
		NULL },
	{ "smtp_mx_address_limit", "addresses tried per attempt, in MX order (0: 16)", NULL },
	{ "smtp_connect_timeout", "per outbound connection attempt", NULL },
	{ "shards", "shard threads, one ring each; auto: online CPUs", "auto" },
	{ "max_connections", "per shard; beyond it a new client gets 421 4.7.0", NULL },
	{ "bad_cmd_max", "bad commands in a session before 421 4.7.0 and close", NULL },
	{ "cmd_timeout", "waiting for a command (RFC 5321 4.5.3.2.7)", NULL },
	{ "data_timeout", "waiting for data in DATA or BDAT (RFC 5321 4.5.3.2.5)", NULL },
	{ "queue_lifetime", "a recipient not delivered by then is bounced", NULL },
	{ "minimal_backoff_time", "the least wait before another delivery attempt", NULL },
	{ "maximal_backoff_time", "the longest wait between delivery attempts", NULL },
	{ "delay_warning_time", "after this long, one \"delayed\" notice to the sender (0: never)",
		NULL },
	{ "log_file", "where log lines go; empty: stderr", NULL },
	{ "log_format", "text (key=value) or json (one JSON object per line)", NULL },
	{ "maildir_sync", "how a Maildir delivery is made durable: auto, fsync or syncfs", NULL },
};

static const char *const config_maildir_sync_names[] = {
	[CONFIG_MAILDIR_SYNC_AUTO] = "auto",
	[CONFIG_MAILDIR_SYNC_FSYNC] = "fsync",
	[CONFIG_MAILDIR_SYNC_SYNCFS] = "syncfs",
};

static const char *const config_log_formats[] = {
	[LOG_FORMAT_TEXT] = "text",
	[LOG_FORMAT_JSON] = "json",
};

static const char *const config_tls_levels[] = {
	[CONFIG_TLS_NONE] = "none", [CONFIG_TLS_MAY] = "may", [CONFIG_TLS_ENCRYPT] = "encrypt",
	[CONFIG_TLS_VERIFY] = "verify",
};

/* A unit suffix of a size or a duration. */
struct config_unit {
	char suffix;
	uint64_t factor;
};

static const struct config_unit config_size_units[] = {
	{ 'g', 1ull << 30 }, { 'm', 1ull << 20 }, { 'k', 1ull << 10 },
};

static const struct config_unit config_time_units[] = {
	{ 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 },
};

/* ---- text helpers ---- */

static bool
config_is_blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static bool
config_is_separator(uint8_t c)
{
	return c == ',' || config_is_blank(c);
}

static struct slice
config_trim(struct slice s)
{
	while (s.len > 0 && config_is_blank(s.ptr[0]))
		s = slice_skip(s, 1);
	while (s.len > 0 && config_is_blank(s.ptr[s.len - 1]))
		s.len--;
	return s;
}

static struct slice
config_cstr(const char *s)
{
	return slice_make(s, strlen(s));
}

/* Copies s into a NUL-terminated field of size cap, zero-filling the rest so that two configs
 * with the same values are equal octet for octet. False if it does not fit. */
static bool
config_copy(char *field, size_t cap, struct slice s)
{
	if (s.len >= cap)
		return false;
	memset(field, 0, cap);
	if (s.len > 0)
		memcpy(field, s.ptr, s.len);
	return true;
}

/* The next list item of *rest (items are separated by commas and blanks); false at the end. */
static bool
config_next_item(struct slice *rest, struct slice *item)
{
	size_t i = 0;
	while (i < rest->len && config_is_separator(rest->ptr[i]))
		i++;
	size_t start = i;
	while (i < rest->len && !config_is_separator(rest->ptr[i]))
		i++;
	*item = slice_sub(*rest, start, i - start);
	*rest = slice_skip(*rest, i);
	return item->len > 0;
}

/* Text from the file quoted back in a message: at most CONFIG_ECHO_MAX octets, and anything but
 * printable ASCII shown as '?', so that a message never carries a control character. */
static void
config_echo(char out[CONFIG_ECHO_MAX + 4], struct slice s)
{
	size_t n = s.len < CONFIG_ECHO_MAX ? s.len : CONFIG_ECHO_MAX;
	for (size_t i = 0; i < n; i++)
		out[i] = s.ptr[i] >= 0x20 && s.ptr[i] < 0x7f ? (char)s.ptr[i] : '?';
	memcpy(out + n, s.len > n ? "...\0" : "\0", s.len > n ? 4 : 1);
}

static void
config_why(char *why, struct slice value, const char *tail)
{
	char echo[CONFIG_ECHO_MAX + 4];
	config_echo(echo, value);
	snprintf(why, CONFIG_WHY_MAX, "%s%s", echo, tail);
}

/* ---- numbers ---- */

/* Decimal digits only (no sign, no blanks), at most UINT64_MAX. */
static bool
config_parse_u64(struct slice s, uint64_t *out)
{
	if (s.len == 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = s.ptr[i];
		if (c < '0' || c > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(c - '0');
	}
	*out = v;
	return true;
}

/* A number with an optional unit suffix (either case); false on syntax or overflow. */
static bool
config_parse_scaled(struct slice s, const struct config_unit *units, size_t unit_count,
	uint64_t *out)
{
	uint64_t factor = 1;
	if (s.len > 0) {
		uint8_t last = slice_ascii_lower(s.ptr[s.len - 1]);
		for (size_t i = 0; i < unit_count; i++) {
			if (units[i].suffix == last) {
				factor = units[i].factor;
				s.len--;
				break;
			}
		}
	}
	uint64_t v;
	if (!config_parse_u64(s, &v) || v > UINT64_MAX / factor)
		return false;
	*out = v * factor;
	return true;
}

/* Writes v with the largest unit that divides it exactly ("50m", "5d", "1500"). */
static void
config_print_scaled(FILE *f, uint64_t v, const struct config_unit *units, size_t unit_count)
{
	for (size_t i = 0; i < unit_count; i++) {
		if (v != 0 && v % units[i].factor == 0) {
			fprintf(f, "%" PRIu64 "%c", v / units[i].factor, units[i].suffix);
			return;
		}
	}
	fprintf(f, "%" PRIu64, v);
}

static int
config_range(const struct config_key *k, struct slice value, uint64_t v, char *why)
{
	if (v >= k->min && v <= k->max)
		return 0;
	char tail[CONFIG_WHY_MAX / 2];
	int n = snprintf(tail, sizeof(tail), " is out of range %" PRIu64 "..%" PRIu64, k->min, k->max);
	if (v > k->max && k->max_why != NULL && n > 0 && (size_t)n < sizeof(tail))
		snprintf(tail + n, sizeof(tail) - (size_t)n, " (%s)", k->max_why);
	config_why(why, value, tail);
	return -1;
}

/* Sizes, counts, ports and durations: the number in the file's unit, range-checked. */
static int
config_parse_number(const struct config_key *k, struct slice value, uint64_t *out, char *why)
{
	const struct config_unit *size = config_size_units, *time = config_time_units;
	bool ok;
	if (k->kind == CONFIG_KIND_SIZE)
		ok = config_parse_scaled(value, size, ARRAY_LEN(config_size_units), out);
	else if (k->kind == CONFIG_KIND_TIMEOUT || k->kind == CONFIG_KIND_LIFETIME)
		ok = config_parse_scaled(value, time, ARRAY_LEN(config_time_units), out);
	else
		ok = config_parse_u64(value, out);
	if (!ok) {
		config_why(why, value, k->kind == CONFIG_KIND_SIZE
			? " is not a size (a number with an optional k, m or g)"
			: k->kind == CONFIG_KIND_TIMEOUT || k->kind == CONFIG_KIND_LIFETIME
			? " is not a duration (seconds, or a number with s, m, h or d)"
			: " is not a number");
		return -1;
	}
	return config_range(k, value, *out, why);
}

static uint32_t
config_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > (long)CONFIG_SHARDS_MAX ? CONFIG_SHARDS_MAX : (uint32_t)n;
}

static int
config_set_number(struct config *cfg, const struct config_key *k, struct slice value, char *why)
{
	uint64_t v;
	if (k->kind == CONFIG_KIND_SHARDS
		&& (slice_eq(value, SLICE_LIT("auto")) || slice_eq(value, SLICE_LIT("0")))) {
		cfg->shards = config_online_cpus();
		return 0;
	}
	if (config_parse_number(k, value, &v, why) != 0)
		return -1;
	void *field = (char *)cfg + k->offset;
	if (k->kind == CONFIG_KIND_SIZE)
		*(uint64_t *)field = v;
	else if (k->kind == CONFIG_KIND_PORT)
		*(uint16_t *)field = (uint16_t)v;
	else if (k->kind == CONFIG_KIND_TIMEOUT)
		*(uint32_t *)field = (uint32_t)(v * 1000u);
	else
		*(uint32_t *)field = (uint32_t)v;
	return 0;
}

/* ---- addresses ---- */

/* An IPv4 or IPv6 address (no brackets, no port) into its family and 16 octets. */
static bool
config_parse_ip(struct slice s, int *family, uint8_t addr[16])
{
	char text[CONFIG_HOST_TEXT_MAX];
	if (s.len == 0 || s.len >= sizeof(text))
		return false;
	memcpy(text, s.ptr, s.len);
	text[s.len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, text, addr) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, addr) == 1) {
		*family = AF_INET6;
		return true;
	}
	return false;
}

static bool
config_parse_port(struct slice s, uint16_t *port)
{
	uint64_t v;
	if (!config_parse_u64(s, &v) || v < 1 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* Splits "ip", "ip:port", "[ip]" or "[ip]:port" (a bare IPv6 address has several colons and no
 * port) into host and port text; false on a bracket without its partner. */
static bool
config_split_hostport(struct slice item, struct slice *host, struct slice *port, bool *bracketed)
{
	*port = slice_sub(item, 0, 0);
	*bracketed = item.len > 0 && item.ptr[0] == '[';
	if (*bracketed) {
		const uint8_t *end = memchr(item.ptr, ']', item.len);
		if (end == NULL)
			return false;
		size_t close = (size_t)(end - item.ptr);
		*host = slice_sub(item, 1, close - 1);
		struct slice rest = slice_skip(item, close + 1);
		if (rest.len == 0)
			return true;
		if (rest.ptr[0] != ':')
			return false;
		*port = slice_skip(rest, 1);
		return port->len > 0;
	}
	const uint8_t *colon = memchr(item.ptr, ':', item.len);
	const uint8_t *last = colon == NULL ? NULL : memrchr(item.ptr, ':', item.len);
	*host = item;
	if (colon != NULL && colon == last) {
		*host = slice_sub(item, 0, (size_t)(colon - item.ptr));
		*port = slice_skip(item, (size_t)(colon - item.ptr) + 1);
		return port->len > 0;
	}
	return memchr(item.ptr, ']', item.len) == NULL;
}

/* One socket address; default_port 0 means the port is required. */
static int
config_parse_addr(struct slice item, uint16_t default_port, struct config_addr *out, char *why)
{
	struct slice host, port_text;
	bool bracketed;
	int family;
	uint8_t addr[16];
	uint16_t port = default_port;
	if (!config_split_hostport(item, &host, &port_text, &bracketed)
		|| !config_parse_ip(host, &family, addr)) {
		config_why(why, item, " is not an address (ip:port or [ipv6]:port)");
		return -1;
	}
	if (port_text.len > 0 ? !config_parse_port(port_text, &port) : port == 0) {
		config_why(why, item, port_text.len > 0 ? ": the port is not in 1..65535"
			: ": a port is needed (ip:port or [ipv6]:port)");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, addr, 4);
		out->sa_len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, addr, 16);
		out->sa_len = sizeof(*sin6);
	}
	return 0;
}

static bool
config_addr_eq(const struct config_addr *a, const struct config_addr *b)
{
	return a->sa_len == b->sa_len && memcmp(&a->sa, &b->sa, a->sa_len) == 0;
}

/* Parses a list of addresses into addrs[0..max); least is the smallest count allowed. */
static int
config_parse_addr_list(struct slice value, uint16_t default_port, uint32_t least,
	struct config_addr *addrs, uint32_t max, uint32_t *count, char *why)
{
	struct config_addr parsed[CONFIG_LISTEN_MAX > CONFIG_DNS_SERVERS_MAX ? CONFIG_LISTEN_MAX
		: CONFIG_DNS_SERVERS_MAX];
	ASSERT(max <= ARRAY_LEN(parsed));
	uint32_t n = 0;
	struct slice item;
	while (config_next_item(&value, &item)) {
		if (n == max) {
			snprintf(why, CONFIG_WHY_MAX, "more than %u addresses", max);
			return -1;
		}
		if (config_parse_addr(item, default_port, &parsed[n], why) != 0)
			return -1;
		for (uint32_t i = 0; i < n; i++) {
			if (config_addr_eq(&parsed[i], &parsed[n])) {
				config_why(why, item, " is listed twice");
				return -1;
			}
		}
		n++;
	}
	if (n < least) {
		snprintf(why, CONFIG_WHY_MAX, "at least %u address is needed", least);
		return -1;
	}
	memset(addrs, 0, sizeof(*addrs) * max);
	memcpy(addrs, parsed, sizeof(*addrs) * n);
	*count = n;
	return 0;
}

/* "127.0.0.1:2525" or "[::1]:2525"; the form config_parse_addr reads back. */
static void
config_print_addr(FILE *f, const struct config_addr *a)
{
	char text[INET6_ADDRSTRLEN];
	if (a->sa.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
		fprintf(f, "%s:%u", text, ntohs(sin->sin_port));
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		fprintf(f, "[%s]:%u", text, ntohs(sin6->sin6_port));
	}
}

static void
config_print_addr_list(FILE *f, const struct config_addr *addrs, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		if (i > 0)
			fputs(", ", f);
		config_print_addr(f, &addrs[i]);
	}
}

/* ---- networks ---- */

/* True if addr has a bit set past prefix_len. */
static bool
config_host_bits_set(const uint8_t addr[16], uint32_t prefix_len)
{
	for (uint32_t bit = prefix_len; bit < 128; bit++) {
		if (addr[bit / 8] & (0x80u >> (bit % 8)))
			return true;
	}
	return false;
}

/* "10.0.0.0/8", "::1/128", "[fd00::]/8", or a bare address (/32, /128). An IPv4-mapped IPv6
 * network becomes the IPv4 network it names, since policy matches mapped clients as IPv4. */
static int
config_parse_network(struct slice item, struct config_network *out, char *why)
{
	struct slice host = item, prefix = slice_sub(item, 0, 0);
	const uint8_t *slash = memchr(item.ptr, '/', item.len);
	if (slash != NULL) {
		host = slice_sub(item, 0, (size_t)(slash - item.ptr));
		prefix = slice_skip(item, host.len + 1);
	}
	if (host.len >= 2 && host.ptr[0] == '[' && host.ptr[host.len - 1] == ']')
		host = slice_sub(host, 1, host.len - 2);
	uint8_t addr[16];
	int family;
	if (!config_parse_ip(host, &family, addr)) {
		config_why(why, item, " is not a network (address/prefix)");
		return -1;
	}
	uint64_t bits = family == AF_INET ? 32 : 128;
	uint64_t len = bits;
	if (slash != NULL && (!config_parse_u64(prefix, &len) || len > bits)) {
		config_why(why, item, family == AF_INET ? ": the prefix is not in 0..32"
			: ": the prefix is not in 0..128");
		return -1;
	}
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (family == AF_INET6 && len >= 96 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
		memmove(addr, addr + 12, 4);
		memset(addr + 4, 0, 12);
		family = AF_INET;
		len -= 96;
	}
	if (config_host_bits_set(addr, (uint32_t)len)) {
		config_why(why, item, ": the address has bits set past the prefix length");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->family = family;
	memcpy(out->addr, addr, sizeof(out->addr));
	out->prefix_len = (uint8_t)len;
	return 0;
}

static int
config_parse_networks(struct config *cfg, struct slice value, char *why)
{
	/* Parsed in place: the caller works on a copy and drops it on error. */
	struct config_network *parsed = cfg->relay_networks;
	memset(parsed, 0, sizeof(cfg->relay_networks));
	uint32_t n = 0;
	struct slice item;
	while (config_next_item(&value, &item)) {
		if (n == CONFIG_NETWORKS_MAX) {
			snprintf(why, CONFIG_WHY_MAX, "more than %u networks", CONFIG_NETWORKS_MAX);
			return -1;
		}
		if (config_parse_network(item, &parsed[n], why) != 0)
			return -1;
		n++;
	}
	cfg->relay_network_count = n;
	return 0;
}

static void
config_print_networks(FILE *f, const struct config *cfg)
{
	for (uint32_t i = 0; i < cfg->relay_network_count; i++) {
		const struct config_network *net = &cfg->relay_networks[i];
		char text[INET6_ADDRSTRLEN];
		inet_ntop(net->family, net->addr, text, sizeof(text));
		fprintf(f, "%s%s/%u", i > 0 ? ", " : "", text, net->prefix_len);
	}
}

/* ---- names and paths ---- */

/* RFC 1035 2.3.1 preferred name syntax (letters, digits, hyphens; labels of 1..63 octets not
 * starting or ending with a hyphen), at most CONFIG_DOMAIN_LEN_MAX octets; no trailing dot. */
static bool
config_domain_valid(struct slice d)
{
	if (d.len == 0 || d.len > CONFIG_DOMAIN_LEN_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i <= d.len; i++) {
		uint8_t c = i < d.len ? d.ptr[i] : '.';
		if (c == '.') {
			if (label == 0 || label > CONFIG_LABEL_LEN_MAX || d.ptr[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool alnum = (c >= '0' && c <= '9') || (slice_ascii_lower(c) >= 'a'
			&& slice_ascii_lower(c) <= 'z');
		if (!alnum && !(c == '-' && label > 0))
			return false;
		label++;
	}
	return true;
}

static int
config_parse_hostname(struct config *cfg, struct slice value, char *why)
{
	value = slice_strip_final_dot(value);
	if (!config_domain_valid(value)) {
		config_why(why, value, value.len == 0 ? "an empty name is not allowed"
			: " is not a host name (letters, digits, hyphens and dots)");
		return -1;
	}
	return config_copy(cfg->myhostname, sizeof(cfg->myhostname), value) ? 0 : -1;
}

static int
config_parse_domains(struct config *cfg, struct slice value, char *why)
{
	/* Parsed in place: the caller works on a copy and drops it on error. */
	char (*parsed)[256] = cfg->local_domains;
	uint32_t n = 0;
	struct slice item;
	memset(cfg->local_domains, 0, sizeof(cfg->local_domains));
	while (config_next_item(&value, &item)) {
		item = slice_strip_final_dot(item);
		if (!config_domain_valid(item)) {
			config_why(why, item, " is not a domain name");
			return -1;
		}
		bool seen = false;
		for (uint32_t i = 0; i < n && !seen; i++)
			seen = slice_eq_nocase(config_cstr(parsed[i]), item);
		if (seen)
			continue;
		if (n == CONFIG_DOMAINS_MAX) {
			snprintf(why, CONFIG_WHY_MAX, "more than %u domains", CONFIG_DOMAINS_MAX);
			return -1;
		}
		for (size_t i = 0; i < item.len; i++)
			parsed[n][i] = (char)slice_ascii_lower(item.ptr[i]);
		n++;
	}
	cfg->local_domain_count = n;
	return 0;
}

static void
config_print_domains(FILE *f, const struct config *cfg)
{
	for (uint32_t i = 0; i < cfg->local_domain_count; i++)
		fprintf(f, "%s%s", i > 0 ? ", " : "", cfg->local_domains[i]);
}

static int
config_parse_path(char *field, struct slice value, char *why)
{
	if (!config_copy(field, CONFIG_STR_MAX, value)) {
		snprintf(why, CONFIG_WHY_MAX, "longer than %u octets", CONFIG_STR_MAX - 1);
		return -1;
	}
	return 0;
}

/* A user name as useradd makes them: 1..CONFIG_USER_LEN_MAX of letters, digits, '_', '-', '.',
 * not starting with '-' or '.'. Whether the user exists is checked at start, not here. */
static int
config_parse_user(char *field, struct slice value, char *why)
{
	bool ok = value.len > 0 && value.len <= CONFIG_USER_LEN_MAX && value.ptr[0] != '-'
		&& value.ptr[0] != '.';
	for (size_t i = 0; ok && i < value.len; i++) {
		uint8_t ch = value.ptr[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
			|| ch == '_' || ch == '-' || ch == '.';
	}
	if (!ok) {
		config_why(why, value, " is not a user name");
		return -1;
	}
	(void)config_copy(field, CONFIG_USER_LEN_MAX + 1, value);   /* fits: length checked */
	return 0;
}

/* Postfix syntax: "[host]:port" or "[host]" (no MX lookup; host may be an IP address), or
 * "host:port" or "host" (MX lookup), or empty (MX lookup of each destination). */
static int
config_parse_relayhost(struct config *cfg, struct slice value, char *why)
{
	struct slice host = value, port_text = slice_sub(value, 0, 0);
	bool bracketed = false;
	uint16_t port = 0;
	int family;
	uint8_t addr[16];
	if (value.len > 0 && !config_split_hostport(value, &host, &port_text, &bracketed))
		goto bad;
	if (port_text.len > 0 && !config_parse_port(port_text, &port))
		goto bad;
	bool is_ip = config_parse_ip(host, &family, addr);
	if (value.len > 0 && !(bracketed && is_ip) && !(!is_ip && config_domain_valid(host)))
		goto bad;
	if (value.len >= sizeof(cfg->relayhost))
		goto bad;
	config_copy(cfg->relayhost, sizeof(cfg->relayhost), value);
	config_copy(cfg->relayhost_name, sizeof(cfg->relayhost_name), host);
	cfg->relayhost_port = port;
	cfg->relayhost_mx = value.len > 0 && !bracketed;
	return 0;
bad:
	config_why(why, value, " is not [host]:port, [host], host:port or host");
	return -1;
}

static int
config_parse_dns(struct config *cfg, struct slice value, char *why)
{
	uint32_t count;
	struct config_addr addrs[CONFIG_DNS_SERVERS_MAX];
	if (config_parse_addr_list(value, CONFIG_DNS_PORT_DEFAULT, 0, addrs, CONFIG_DNS_SERVERS_MAX,
		&count, why) != 0)
		return -1;
	memcpy(cfg->dns, addrs, sizeof(addrs));
	cfg->dns_server_count = count;
	/* The text field keeps the normalised list, as config_print writes it. */
	char *text = NULL;
	size_t text_len = 0;
	FILE *f = open_memstream(&text, &text_len);
	if (f == NULL) {
		snprintf(why, CONFIG_WHY_MAX, "out of memory");
		return -1;
	}
	config_print_addr_list(f, addrs, count);
	fclose(f);
	bool fits = config_copy(cfg->dns_servers, sizeof(cfg->dns_servers), slice_make(text,
		text_len));
	free(text);
	ASSERT(fits);   /* CONFIG_DNS_SERVERS_MAX * "[ipv6]:port, " is far below CONFIG_STR_MAX */
	return 0;
}

/* Postfix's inet_protocols: "all", "ipv4", "ipv6", or both families listed. */
static int
config_parse_inet(struct config *cfg, struct slice value, char *why)
{
	uint32_t families = 0;
	struct slice item;
	struct slice rest = value;
	while (config_next_item(&rest, &item)) {
		if (slice_eq(item, SLICE_LIT("all")))
			families |= CONFIG_INET_ALL;
		else if (slice_eq(item, SLICE_LIT("ipv4")))
			families |= CONFIG_INET_IPV4;
		else if (slice_eq(item, SLICE_LIT("ipv6")))
			families |= CONFIG_INET_IPV6;
		else
			families = UINT32_MAX;
		if (families == UINT32_MAX)
			break;
	}
	if (families == 0 || families == UINT32_MAX) {
		config_why(why, value, " is not all, ipv4, ipv6 or \"ipv4, ipv6\"");
		return -1;
	}
	cfg->inet_protocols = families;
	return 0;
}

static const char *
config_inet_name(uint32_t families)
{
	if (families == CONFIG_INET_IPV4)
		return "ipv4";
	return families == CONFIG_INET_IPV6 ? "ipv6" : "all";
}

/* ---- the table ---- */

static int
config_parse_tls_level(uint8_t *field, struct slice value, char *why)
{
	for (size_t i = 0; i < ARRAY_LEN(config_tls_levels); i++) {
		if (slice_eq(value, config_cstr(config_tls_levels[i]))) {
			*field = (uint8_t)i;
			return 0;
		}
	}
	config_why(why, value, " is not none, may, encrypt or verify");
	return -1;
}

static const struct config_key *
config_key_find(struct slice name)
{
	for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
		if (slice_eq(name, config_cstr(config_keys[i].name)))
			return &config_keys[i];
	}
	return NULL;
}

static int
config_set_value(struct config *cfg, const struct config_key *k, struct slice value, char *why)
{
	char *field = (char *)cfg + k->offset;
	switch (k->kind) {
	case CONFIG_KIND_ADDRS:
		return config_parse_addr_list(value, 0, (uint32_t)k->min,
			(struct config_addr *)field, CONFIG_LISTEN_MAX,
			(uint32_t *)((char *)cfg + k->count_offset), why);
	case CONFIG_KIND_HOSTNAME:
		return config_parse_hostname(cfg, value, why);
	case CONFIG_KIND_DOMAINS:
		return config_parse_domains(cfg, value, why);
	case CONFIG_KIND_PATH:
		return config_parse_path(field, value, why);
	case CONFIG_KIND_USER:
		return config_parse_user(field, value, why);
	case CONFIG_KIND_NETWORKS:
		return config_parse_networks(cfg, value, why);
	case CONFIG_KIND_RELAYHOST:
		return config_parse_relayhost(cfg, value, why);
	case CONFIG_KIND_DNS:
		return config_parse_dns(cfg, value, why);
	case CONFIG_KIND_MAILDIR_SYNC:
		for (size_t i = 0; i < ARRAY_LEN(config_maildir_sync_names); i++) {
			if (slice_eq(value, config_cstr(config_maildir_sync_names[i]))) {
				cfg->maildir_sync = (enum config_maildir_sync)i;
				return 0;
			}
		}
		config_why(why, value, " is not auto, fsync or syncfs");
		return -1;
	case CONFIG_KIND_LOG_FORMAT:
		for (size_t i = 0; i < ARRAY_LEN(config_log_formats); i++) {
			if (slice_eq(value, config_cstr(config_log_formats[i]))) {
				cfg->log_format = (uint32_t)i;
				return 0;
			}
		}
		config_why(why, value, " is not text or json");
		return -1;
	case CONFIG_KIND_INET:
		return config_parse_inet(cfg, value, why);
	case CONFIG_KIND_TLS_LEVEL:
		return config_parse_tls_level((uint8_t *)field, value, why);
	case CONFIG_KIND_BOOL:
		if (!slice_eq(value, SLICE_LIT("yes")) && !slice_eq(value, SLICE_LIT("no"))) {
			config_why(why, value, " is not yes or no");
			return -1;
		}
		*(bool *)field = slice_eq(value, SLICE_LIT("yes"));
		return 0;
	case CONFIG_KIND_SIZE:
	case CONFIG_KIND_COUNT:
	case CONFIG_KIND_PORT:
	case CONFIG_KIND_TIMEOUT:
	case CONFIG_KIND_LIFETIME:
	case CONFIG_KIND_SHARDS:
		return config_set_number(cfg, k, value, why);
	}
	ASSERT(!"unknown config kind");
	return -1;
}

static void
config_print_value(FILE *f, const struct config *cfg, const struct config_key *k)
{
	const char *field = (const char *)cfg + k->offset;
	uint32_t count = k->count_offset ? *(const uint32_t *)((const char *)cfg + k->count_offset)
		: 0;
	switch (k->kind) {
	case CONFIG_KIND_ADDRS:
	case CONFIG_KIND_DNS:
		config_print_addr_list(f, (const struct config_addr *)field, count);
		break;
	case CONFIG_KIND_DOMAINS:
		config_print_domains(f, cfg);
		break;
	case CONFIG_KIND_NETWORKS:
		config_print_networks(f, cfg);
		break;
	case CONFIG_KIND_HOSTNAME:
	case CONFIG_KIND_PATH:
	case CONFIG_KIND_USER:
	case CONFIG_KIND_RELAYHOST:
		fputs(field, f);
		break;
	case CONFIG_KIND_SIZE:
		config_print_scaled(f, *(const uint64_t *)field, config_size_units,
			ARRAY_LEN(config_size_units));
		break;
	case CONFIG_KIND_PORT:
		fprintf(f, "%u", *(const uint16_t *)field);
		break;
	case CONFIG_KIND_TIMEOUT:
		config_print_scaled(f, *(const uint32_t *)field / 1000u, config_time_units,
			ARRAY_LEN(config_time_units));
		break;
	case CONFIG_KIND_LIFETIME:
		config_print_scaled(f, *(const uint32_t *)field, config_time_units,
			ARRAY_LEN(config_time_units));
		break;
	case CONFIG_KIND_COUNT:
	case CONFIG_KIND_SHARDS:
		fprintf(f, "%u", *(const uint32_t *)field);
		break;
	case CONFIG_KIND_MAILDIR_SYNC:
		fputs(config_maildir_sync_names[cfg->maildir_sync], f);
		break;
	case CONFIG_KIND_LOG_FORMAT:
		fputs(config_log_formats[cfg->log_format], f);
		break;
	case CONFIG_KIND_INET:
		fputs(config_inet_name(*(const uint32_t *)field), f);
		break;
	case CONFIG_KIND_TLS_LEVEL:
		ASSERT(*(const uint8_t *)field < ARRAY_LEN(config_tls_levels));
		fputs(config_tls_levels[*(const uint8_t *)field], f);
		break;
	case CONFIG_KIND_BOOL:
		fputs(*(const bool *)field ? "yes" : "no", f);
		break;
	}
}

/* ---- lines ---- */

/* Why a value is refused before its key sees it: control characters, and a '#' at its start or
 * after a blank, which would be a comment in most formats but is none here. */
static const char *
config_value_refused(struct slice value)
{
	for (size_t i = 0; i < value.len; i++) {
		uint8_t c = value.ptr[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "a control character is not allowed in a value";
		if (c == '#' && (i == 0 || config_is_blank(value.ptr[i - 1])))
			return "'#' starts a comment only at the start of a line";
	}
	return NULL;
}

/* Formats "name:line: " (or "name: " when line is 0, as for -o) in front of the rest. */
static int
config_fail(char *err, size_t err_len, const char *name, uint32_t line, const char *rest)
{
	if (line > 0)
		snprintf(err, err_len, "%s:%u: %s", name, line, rest);
	else
		snprintf(err, err_len, "%s: %s", name, rest);
	return -1;
}

/* Applies one line (without its LF) to cfg. */
static int
config_apply_line(struct config *cfg, const char *name, uint32_t line, struct slice text,
	char *err, size_t err_len)
{
	char why[CONFIG_WHY_MAX];
	char msg[CONFIG_WHY_MAX + 128];
	if (text.len > 0 && text.ptr[text.len - 1] == '\r')
		text.len--;
	text = config_trim(text);
	if (text.len == 0 || text.ptr[0] == '#')
		return 0;
	const uint8_t *eq = memchr(text.ptr, '=', text.len);
	if (eq == NULL)
		return config_fail(err, err_len, name, line, "expected key = value");
	struct slice key = config_trim(slice_sub(text, 0, (size_t)(eq - text.ptr)));
	struct slice value = config_trim(slice_skip(text, (size_t)(eq - text.ptr) + 1));
	const struct config_key *k = config_key_find(key);
	if (k == NULL) {
		char echo[CONFIG_ECHO_MAX + 4];
		config_echo(echo, key);
		snprintf(msg, sizeof(msg), "%s: unknown key", echo);
		return config_fail(err, err_len, name, line, msg);
	}
	const char *refused = config_value_refused(value);
	if (refused != NULL) {
		snprintf(msg, sizeof(msg), "%s: %s", k->name, refused);
		return config_fail(err, err_len, name, line, msg);
	}
	if (config_set_value(cfg, k, value, why) != 0) {
		snprintf(msg, sizeof(msg), "%s: %s", k->name, why);
		return config_fail(err, err_len, name, line, msg);
	}
	return 0;
}

/* Applies every line of buf; numbered false (for -o) leaves the line number out of messages. */
static int
config_apply_lines(struct config *cfg, const char *name, bool numbered, struct slice rest,
	char *err, size_t err_len)
{
	uint32_t line = 0;
	while (rest.len > 0) {
		line++;
		uint32_t shown = numbered ? line : 0;
		const uint8_t *lf = memchr(rest.ptr, '\n', rest.len);
		size_t text_len = lf == NULL ? rest.len : (size_t)(lf - rest.ptr);
		if (text_len >= CONFIG_LINE_LEN_MAX) {
			char msg[64];
			snprintf(msg, sizeof(msg), "line longer than %u octets",
				CONFIG_LINE_LEN_MAX - 1);
			return config_fail(err, err_len, name, shown, msg);
		}
		struct slice text = slice_sub(rest, 0, text_len);
		if (memchr(text.ptr, '\0', text.len) != NULL)
			return config_fail(err, err_len, name, shown, "NUL octet in line");
		if (config_apply_line(cfg, name, shown, text, err, err_len) != 0)
			return -1;
		rest = slice_skip(rest, lf == NULL ? text_len : text_len + 1);
	}
	return 0;
}

/* Parses into a copy so that a failure leaves cfg as it was. */
static int
config_load(struct config *cfg, const char *name, bool numbered, struct slice text, char *err,
	size_t err_len)
{
	struct config *work = malloc(sizeof(*work));
	if (work == NULL)
		return config_fail(err, err_len, name, 0, "out of memory");
	memcpy(work, cfg, sizeof(*work));
	int rc = config_apply_lines(work, name, numbered, text, err, err_len);
	if (rc == 0)
		memcpy(cfg, work, sizeof(*cfg));
	free(work);
	return rc;
}

/* ---- public ---- */

static void
config_default_hostname(char *out, size_t cap)
{
	char name[256];
	if (gethostname(name, sizeof(name)) != 0)
		name[0] = '\0';
	name[sizeof(name) - 1] = '\0';
	struct slice s = slice_strip_final_dot(config_cstr(name));
	if (!config_domain_valid(s))
		s = SLICE_LIT("localhost");
	bool fits = config_copy(out, cap, s);
	ASSERT(fits);
}

void
config_default(struct config *cfg)
{
	char err[CONFIG_ERR_MAX];
	memset(cfg, 0, sizeof(*cfg));
	int rc = config_load_buf(cfg, "default", config_default_text,
		sizeof(config_default_text) - 1, err, sizeof(err));
	ASSERT(rc == 0);
	config_default_hostname(cfg->myhostname, sizeof(cfg->myhostname));
	cfg->remote_smtp_port = CONFIG_REMOTE_SMTP_PORT_DEFAULT;
	cfg->max_message_size = CONFIG_MESSAGE_SIZE_DEFAULT;
	cfg->max_recipients = SMTP_RCPT_COUNT_MAX;
	cfg->max_connections = CONFIG_CONNECTIONS_DEFAULT;
	cfg->bad_cmd_max = SMTP_BAD_CMD_COUNT_MAX;
	cfg->cmd_timeout_ms = SMTP_TIMEOUT_CMD_MS;
	cfg->data_timeout_ms = SMTP_TIMEOUT_DATA_MS;
	cfg->shards = config_online_cpus();
	cfg->queue_lifetime_s = CONFIG_QUEUE_LIFETIME_DEFAULT_S;
	cfg->minimal_backoff_s = CONFIG_MINIMAL_BACKOFF_DEFAULT_S;
	cfg->maximal_backoff_s = CONFIG_MAXIMAL_BACKOFF_DEFAULT_S;
	cfg->maildir_sync = CONFIG_MAILDIR_SYNC_DEFAULT;
	cfg->dns_cache_max = CONFIG_DNS_CACHE_MAX_DEFAULT;
	cfg->inet_protocols = CONFIG_INET_ALL;
	cfg->smtp_tls_security_level = CONFIG_TLS_MAY;
	cfg->submission_sender_check = true;
	cfg->dest_concurrency_limit = CONFIG_DEST_CONCURRENCY_DEFAULT;
	cfg->dest_recipient_limit = CONFIG_DEST_RCPT_DEFAULT;
	cfg->connection_reuse_limit = CONFIG_REUSE_LIMIT_DEFAULT;
	cfg->outbound_connection_limit = CONFIG_OUT_CONNECTIONS_DEFAULT;
	cfg->connection_idle_ms = CONFIG_IDLE_TIME_DEFAULT_MS;
	cfg->smtp_mx_address_limit = CONFIG_MX_ADDRESS_LIMIT_DEFAULT;
	cfg->smtp_connect_timeout_ms = CONFIG_CONNECT_TIMEOUT_DEFAULT_MS;
}

int
config_load_buf(struct config *cfg, const char *name, const char *buf, size_t len, char *err,
	size_t err_len)
{
	return config_load(cfg, name, true, slice_make(buf, len), err, err_len);
}

int
config_load_file(struct config *cfg, const char *path, char *err, size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	char *buf = malloc(CONFIG_FILE_SIZE_MAX + 1);
	size_t len = 0;
	ssize_t n = 1;
	while (buf != NULL && len <= CONFIG_FILE_SIZE_MAX && n > 0) {
		n = read(fd, buf + len, CONFIG_FILE_SIZE_MAX + 1 - len);
		if (n > 0)
			len += (size_t)n;
		else if (n < 0 && errno == EINTR)
			n = 1;
	}
	int read_errno = errno;
	close(fd);
	int rc = -1;
	if (buf == NULL)
		snprintf(err, err_len, "%s: out of memory", path);
	else if (n < 0)
		snprintf(err, err_len, "%s: %s", path, strerror(read_errno));
	else if (len > CONFIG_FILE_SIZE_MAX)
		snprintf(err, err_len, "%s: larger than %u octets", path, CONFIG_FILE_SIZE_MAX);
	else
		rc = config_load_buf(cfg, path, buf, len, err, err_len);
	free(buf);
	return rc;
}

int
config_set(struct config *cfg, const char *key_value, char *err, size_t err_len)
{
	struct slice text = config_cstr(key_value);
	if (memchr(text.ptr, '\n', text.len) != NULL)
		return config_fail(err, err_len, "-o", 0, "a line break is not allowed");
	if (memchr(text.ptr, '=', text.len) == NULL)
		return config_fail(err, err_len, "-o", 0, "expected key=value");
	return config_load(cfg, "-o", false, text, err, err_len);
}

static bool
config_addr_listed(const struct config_addr *a, const struct config_addr *list, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		if (config_addr_eq(a, &list[i]))
			return true;
	}
	return false;
}

int
config_check(const struct config *cfg, char *err, size_t err_len)
{
	bool tls = (cfg->tls_cert_file[0] != '\0' && cfg->tls_key_file[0] != '\0')
		|| (cfg->tls_eccert_file[0] != '\0' && cfg->tls_eckey_file[0] != '\0');
	if ((cfg->tls_cert_file[0] != '\0') != (cfg->tls_key_file[0] != '\0')) {
		snprintf(err, err_len, "tls_cert_file and tls_key_file: set both or neither");
		return -1;
	}
	if ((cfg->tls_eccert_file[0] != '\0') != (cfg->tls_eckey_file[0] != '\0')) {
		snprintf(err, err_len, "tls_eccert_file and tls_eckey_file: set both or neither");
		return -1;
	}
	if (cfg->smtps_listen_count > 0 && !tls) {
		snprintf(err, err_len, "smtps_listen needs tls_cert_file and tls_key_file "
			"(or tls_eccert_file and tls_eckey_file)");
		return -1;
	}
	if (cfg->submission_listen_count > 0 && (!tls || cfg->auth_users_file[0] == '\0')) {
		snprintf(err, err_len, "submission_listen needs tls_cert_file, tls_key_file and "
			"auth_users_file (AUTH is offered only over TLS)");
		return -1;
	}
	if (cfg->tls_server_sni_file[0] != '\0' && !tls) {
		snprintf(err, err_len, "tls_server_sni_file needs a default certificate "
			"(tls_cert_file and tls_key_file, or tls_eccert_file and tls_eckey_file)");
		return -1;
	}
	for (uint32_t i = 0; i < cfg->submission_listen_count; i++) {
		if (config_addr_listed(&cfg->submission_listen[i], cfg->listen, cfg->listen_count))
			goto twice;
	}
	for (uint32_t i = 0; i < cfg->smtps_listen_count; i++) {
		if (config_addr_listed(&cfg->smtps_listen[i], cfg->listen, cfg->listen_count)
			|| config_addr_listed(&cfg->smtps_listen[i], cfg->submission_listen,
			cfg->submission_listen_count))
			goto twice;
	}
	for (uint32_t i = 0; i < cfg->metrics_listen_count; i++) {
		if (config_addr_listed(&cfg->metrics_listen[i], cfg->listen, cfg->listen_count)
			|| config_addr_listed(&cfg->metrics_listen[i], cfg->submission_listen,
			cfg->submission_listen_count)
			|| config_addr_listed(&cfg->metrics_listen[i], cfg->smtps_listen,
			cfg->smtps_listen_count))
			goto twice;
	}
	if (cfg->minimal_backoff_s > cfg->maximal_backoff_s) {
		snprintf(err, err_len, "minimal_backoff_time is above maximal_backoff_time");
		return -1;
	}
	if (strlen(cfg->local_listen) > CONFIG_UNIX_PATH_MAX) {
		snprintf(err, err_len, "local_listen: longer than %u octets (a Unix socket path)",
			CONFIG_UNIX_PATH_MAX);
		return -1;
	}
	if (cfg->spool_dir[0] == '\0' || cfg->maildir_root[0] == '\0') {
		snprintf(err, err_len, "spool_dir and maildir_root must not be empty");
		return -1;
	}
	char sock[CONFIG_CONTROL_SOCKET_MAX];
	if (config_control_socket(cfg, cfg->shards - 1, sock, sizeof(sock)) != 0) {
		snprintf(err, err_len, "control_socket: longer than a Unix socket name (%u octets%s)",
			CONFIG_CONTROL_SOCKET_MAX - 1, cfg->control_socket[0] == '\0'
			? "; the default is <spool_dir>/control" : "");
		return -1;
	}
	return 0;
twice:
	snprintf(err, err_len,
		"listen, submission_listen, smtps_listen, metrics_listen: an address is in two lists");
	return -1;
}

int
config_load_all(struct config *cfg, const char *file, const char *const *overrides,
	uint32_t override_count, char *err, size_t err_len)
{
	config_default(cfg);
	if (file != NULL && config_load_file(cfg, file, err, err_len) != 0)
		return -1;
	for (uint32_t i = 0; i < override_count; i++) {
		if (config_set(cfg, overrides[i], err, err_len) != 0)
			return -1;
	}
	return config_check(cfg, err, err_len);
}

int
config_control_socket(const struct config *cfg, uint32_t shard, char *out, size_t cap)
{
	int n = cfg->control_socket[0] != '\0'
		? snprintf(out, cap, "%s", cfg->control_socket)
		: snprintf(out, cap, "%s/control", cfg->spool_dir);
	if (n >= 0 && (size_t)n < cap && shard > 0)
		n += snprintf(out + n, cap - (size_t)n, ".%u", shard);
	if (n < 0 || (size_t)n >= cap || (size_t)n >= CONFIG_CONTROL_SOCKET_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* The value of k in cfg as config_print writes it: malloc'ed, NULL when out of memory. Through a
 * buffer so that an empty value leaves no trailing blank. */
static char *
config_value_text(const struct config *cfg, const struct config_key *k)
{
	char *value = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&value, &len);
	if (mem == NULL)
		return NULL;
	config_print_value(mem, cfg, k);
	fclose(mem);
	return value;
}

static void
config_print_line(FILE *f, const char *prefix, const char *name, const char *value)
{
	fprintf(f, "%s%s =%s%s\n", prefix, name, value[0] != '\0' ? " " : "", value);
}

void
config_print(const struct config *cfg, FILE *f)
{
	fputs("# ringmta: the effective configuration\n", f);
	for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
		char *value = config_value_text(cfg, &config_keys[i]);
		config_print_line(f, "", config_keys[i].name, value != NULL ? value : "");
		free(value);
	}
}

_Static_assert(ARRAY_LEN(config_docs) == ARRAY_LEN(config_keys), "every key has its meaning");

static const struct config_doc *
config_doc(size_t i)
{
	ASSERT(i < ARRAY_LEN(config_docs));
	ASSERT(strcmp(config_docs[i].name, config_keys[i].name) == 0);   /* same order */
	return &config_docs[i];
}

int
config_print_sample(const struct config *cfg, FILE *f)
{
	static struct config def;
	config_default(&def);
	fputs("# ringmta.conf - written by `ringmta --print-sample` from the daemon's own key table:\n"
		"# every key, its meaning and its default. \"#key = value\" shows the default;\n"
		"# \"key = value\" sets a key. A '#' starts a comment only at the start of a line;\n"
		"# unknown keys and out-of-range values are errors at start-up. See ringmta.conf(5).\n",
		f);
	int rc = 0;
	for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
		const struct config_doc *d = config_doc(i);
		char *value = config_value_text(cfg, &config_keys[i]);
		char *dflt = config_value_text(&def, &config_keys[i]);
		if (value == NULL || dflt == NULL) {
			rc = -1;
		} else {
			const char *shown = d->shown != NULL ? d->shown : dflt;
			bool set = strcmp(value, dflt) != 0;
			fprintf(f, "\n# %s: %s\n", d->name, d->meaning);
			if (set)
				fprintf(f, "# (default: %s)\n", shown[0] != '\0' ? shown : "empty");
			config_print_line(f, set ? "" : "#", d->name, set ? value : shown);
		}
		free(value);
		free(dflt);
	}
	return rc;
}

/* roff text: a backslash and a minus written as roff wants them. */
static void
config_man_text(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
	}
}

int
config_print_man(FILE *f)
{
	static struct config def;
	config_default(&def);
	int rc = 0;
	for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
		const struct config_doc *d = config_doc(i);
		char *dflt = config_value_text(&def, &config_keys[i]);
		if (dflt == NULL) {
			rc = -1;
			continue;
		}
		const char *shown = d->shown != NULL ? d->shown : dflt;
		fputs(".TP\n.B ", f);
		config_man_text(f, d->name);
		fputs("\n", f);
		config_man_text(f, d->meaning);
		fputs(".\nDefault: ", f);
		config_man_text(f, shown[0] != '\0' ? shown : "empty");
		fputs(".\n", f);
		free(dflt);
	}
	return rc;
}

/* "a,b,c" of a listen list, as config_print writes its addresses, for the started line. */
static void
config_line_addrs(struct log_line *l, const char *key, const struct config_addr *addrs,
	uint32_t count)
{
	char text[CONFIG_LISTEN_MAX * (INET6_ADDRSTRLEN + 16)];
	size_t len = 0;
	text[0] = '\0';
	for (uint32_t i = 0; i < count; i++) {
		char addr[CONFIG_ADDR_TEXT_MAX];
		config_addr_format(&addrs[i], addr, sizeof(addr));
		int n = snprintf(text + len, sizeof(text) - len, "%s%s", i > 0 ? "," : "", addr);
		if (n < 0 || (size_t)n >= sizeof(text) - len)
			break;
		len += (size_t)n;
	}
	log_line_str(l, key, text);
}

void
config_addr_format(const struct config_addr *a, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN];
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
	bool v4 = a->sa.ss_family == AF_INET;
	inet_ntop(a->sa.ss_family, v4 ? (const void *)&sin->sin_addr
		: (const void *)&sin6->sin6_addr, host, sizeof(host));
	snprintf(buf, cap, v4 ? "%s:%u" : "[%s]:%u", host,
		ntohs(v4 ? sin->sin_port : sin6->sin6_port));
}

size_t
config_format_started(char *buf, size_t cap, uint64_t now_ms, const struct config *cfg,
	uint32_t shard_count)
{
	struct log_line l;
	log_line_begin(&l, buf, cap, now_ms, "started");
	log_line_u64(&l, "shards", shard_count);
	log_line_str(&l, "myhostname", cfg->myhostname);
	config_line_addrs(&l, "listen", cfg->listen, cfg->listen_count);
	config_line_addrs(&l, "submission_listen", cfg->submission_listen,
		cfg->submission_listen_count);
	config_line_addrs(&l, "smtps_listen", cfg->smtps_listen, cfg->smtps_listen_count);
	config_line_addrs(&l, "metrics_listen", cfg->metrics_listen, cfg->metrics_listen_count);
	log_line_str(&l, "local_listen", cfg->local_listen);
	log_line_str(&l, "spool_dir", cfg->spool_dir);
	return log_line_end(&l);
}
