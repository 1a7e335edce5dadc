/* dns/resolv_conf.h - the name servers and options of /etc/resolv.conf (resolv.conf(5)).
 *
 * Read once at start-up, before the shards start, when dns_servers is empty. Of the file only
 * `nameserver ADDRESS` lines (IPv4 or IPv6, a %scope suffix ignored, port 53) and the `timeout:n`
 * and `attempts:n` options (on `options` lines, and in RES_OPTIONS as glibc reads it) matter to
 * ringmta; other lines are ignored, as the C library ignores what it does not know. At most
 * CONFIG_DNS_SERVERS_MAX servers are kept (glibc keeps 3); values are clamped as glibc clamps
 * them (timeout at most CONFIG_DNS_TIMEOUT_MAX_S, attempts at most CONFIG_DNS_ATTEMPTS_MAX). */
#ifndef RINGMTA_DNS_RESOLV_CONF_H
#define RINGMTA_DNS_RESOLV_CONF_H
#include <stdint.h>

#include "base/slice.h"
#include "conf/config.h"

#define DNS_RESOLV_CONF_SIZE_MAX 65536u   /* octets read of the file */
#define DNS_RESOLV_CONF_PATH "/etc/resolv.conf"

struct dns_resolv_conf {
	struct config_addr servers[CONFIG_DNS_SERVERS_MAX];
	uint32_t server_count;
	uint32_t timeout_s;      /* 0: not given */
	uint32_t attempts;       /* 0: not given */
};

/* Parses the text of a resolv.conf; cannot fail (unknown or malformed lines are skipped). */
void dns_resolv_conf_parse(struct slice text, struct dns_resolv_conf *out);

/* Parses the options of an `options` line or of RES_OPTIONS into out. */
void dns_resolv_conf_options(struct slice text, struct dns_resolv_conf *out);

/* Reads and parses the file at path. Returns 0, or -errno (out then holds no server). */
int dns_resolv_conf_read(const char *path, struct dns_resolv_conf *out) MUST_USE;
#endif
