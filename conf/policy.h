/* conf/policy.h - who may relay, which recipients exist, and the Maildir name of a local part.
 *
 * Built once at start-up from the configuration (policy_init reads local_users_file), then
 * frozen: every shard reads it at once without locks, and nothing here allocates or does I/O
 * after policy_init. The config it was built from must outlive it.
 *
 * No open relay (RFC 2505 2.1): a recipient outside the local domains is accepted only from a
 * client the caller says may relay (a relay_networks address, or later an authenticated one).
 * Source routing hidden in a local part ('%' hack, '!' paths, quoted "user@remote") is never
 * interpreted: such a local part of a local domain is an unknown user, so it can neither relay
 * nor name an odd Maildir directory. The caller has already dropped an RFC 5321 source route.
 *
 * Local parts compare ASCII case-insensitively (RFC 2505 2: "<sPAmMeR@domain.example> and
 * <spammer@domain.example> is most probably the same user"); the Maildir directory is the
 * lower-cased local part. `postmaster` always exists (RFC 5321 4.5.1). */
#ifndef RINGMTA_CONF_POLICY_H
#define RINGMTA_CONF_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/assert.h"
#include "base/slice.h"
#include "proto/smtp_server.h"
#include "conf/config.h"

#define POLICY_LOCAL_PART_LEN_MAX    64u          /* RFC 5321 4.5.3.1.1 */
#define POLICY_USERS_MAX        4000000u          /* lines of local_users_file */
#define POLICY_USERS_FILE_SIZE_MAX (256u << 20)   /* octets of local_users_file */

struct policy {
	/* private: use the functions */
	const struct config *cfg;     /* local_domains, relay_networks */
	uint16_t domain_len[CONFIG_DOMAINS_MAX];   /* strlen of cfg->local_domains[i] */
	bool every_user_exists;       /* local_users_file is empty */
	uint32_t user_count;
	uint32_t slot_mask;           /* slot count - 1, a power of two */
	uint32_t *slots;              /* 0: empty; else 1 + offset of a name in names */
	uint8_t *names;               /* length octet, then the lower-cased local part */
	size_t names_len;
};

/* Builds p from cfg, reading cfg->local_users_file (one local part per line, blank lines and
 * lines starting with '#' ignored; a local part that could not be a recipient is an error).
 * Returns 0, or -1 with a message naming file and line in err. */
MUST_USE int policy_init(struct policy *p, const struct config *cfg, char *err, size_t err_len);

void policy_fini(struct policy *p);

/* True if the client address is in relay_networks. An IPv4-mapped IPv6 address (::ffff:a.b.c.d,
 * as a dual-stack listener reports IPv4 clients) matches IPv4 networks; other families never. */
bool policy_client_may_relay(const struct policy *p, const struct sockaddr *sa);

/* The RCPT TO verdict (the parsed path of proto/smtp_addr: quotes removed, `quoted` set):
 *   empty domain (<postmaster>)                      -> OK
 *   local domain, local part unsafe or quoted         -> UNKNOWN_USER
 *   local domain, user unknown                        -> UNKNOWN_USER
 *   local domain, user known                          -> OK
 *   other domain                                      -> OK if relay_allowed, else RELAY_DENIED */
enum smtp_rcpt_verdict policy_rcpt(const struct policy *p, bool relay_allowed,
	struct slice local_part, struct slice domain, bool quoted);

/* True if domain (either case, one trailing dot ignored) is one of local_domains. */
bool policy_domain_is_local(const struct policy *p, struct slice domain);

/* True if the local part may name a Maildir directory and be looked up: 1..64 octets, no '/',
 * '%', '!', '@', blank, control character or DEL, not starting with '.'. */
bool policy_local_part_safe(struct slice local_part);

/* Writes the Maildir directory name of a local part (lower-cased, NUL-terminated) to out.
 * Returns 0, or -1 if the local part is not safe or does not fit out_len. */
MUST_USE int policy_mailbox_name(const struct policy *p, struct slice local_part, char *out,
	size_t out_len);
#endif
