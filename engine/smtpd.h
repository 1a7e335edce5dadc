/* engine/smtpd.h - the SMTP server session: proto/smtp_server on a connection of the transport.
 *
 * One session per accepted connection, in slots allocated on first use and reused (the
 * smtp_server arena inside each stays untouched until a session writes its envelope). The
 * session feeds the state machine, sends its replies, builds each message (queue id, Received:
 * header, body) and hands it to the spool at COMMIT; the spool's verdict comes back as a posted
 * event with the session's user_data, and only then does the machine say 250 (or 451/452).
 *
 * Each listener has its own profile (struct smtpd_profile): port 25 style, submission (587) or
 * implicit TLS (465); the session runs with its listener's profile. Owned by one shard.
 *
 * TLS: on the machine's STARTTLS action (its 220 is already written) the session starts the
 * connection's TLS stage (engine/conn: what the client pipelined behind STARTTLS is dropped) with
 * the current server context of the shared slot (a SIGHUP reload publishes a new one; a
 * connection keeps the one it started with); when the handshake is done the machine starts over
 * (smtp_server_tls_started). On an implicit-TLS profile the stage starts before the greeting,
 * which leaves sealed once the handshake is done. Every handshake is logged (event=tls with the
 * protocol and cipher, or event=tls_failed with the reason). The Received: field names the
 * protocol (ESMTPS, ESMTPSA: RFC 3848) and the cipher.
 *
 * AUTH: the machine's credentials are copied into a job that a worker of the pool verifies
 * (conf/passwd, crypt(3)); the verdict comes back through the ring, and a session slot whose
 * job is out is not reused until it is back. A 535 waits SMTPD_AUTH_FAIL_DELAY_MS times the
 * failures so far (a kernel timeout on the ring, the slot busy meanwhile), and the machine
 * closes with 421 after SMTP_AUTH_FAILURES_MAX of them. An authenticated session may relay (as a client
 * in relay_networks may). Each outcome is logged (event=auth user=... result=ok|failed|error),
 * never the password. While the shard stops, AUTH answers 454 and no job is started.
 *
 * Submission (a profile with msa_fixup: 587 and 465): the body's header section goes through
 * proto/msa_fixup on its way to the spool, which adds Date: and Message-ID: when missing (RFC
 * 6409 8.2, 8.3); the body's octets stay in the receive buffers all the same, only the added
 * fields (and a field name cut by the end of a read) are copied. */
#ifndef RINGMTA_ENGINE_SMTPD_H
#define RINGMTA_ENGINE_SMTPD_H
#include <stdbool.h>
#include <stdint.h>

#include "base/ring.h"
#include "engine/conn.h"
#include "proto/smtp_server.h"

struct config;
struct passwd_slot;
struct policy;
struct spool;
struct smtpd;
struct tls_server_slot;
struct workpool;

/* What a listener's sessions run with. */
struct smtpd_profile {
	struct smtp_server_config smtp;   /* rcpt_check is filled in by smtpd_init */
	bool implicit_tls;                /* RFC 8314: TLS from the first octet (needs tls) */
	bool msa_fixup;                   /* RFC 6409 8: Date:, Message-ID: added when missing */
};

#define SMTPD_AUTH_FAIL_DELAY_MS 500u   /* times the failures so far: the wait before a 535 */

struct smtpd_stats {
	uint64_t messages_committed;
	uint64_t tls_handshakes;        /* completed */
	uint64_t tls_failures;
	uint64_t auth_ok;
	uint64_t auth_failed;           /* 535 and 454 */
};

struct smtpd_params {
	const struct config *cfg;
	const struct policy *policy;
	struct spool *spool;
	struct conn_pool *conns;
	/* One profile per listener index (as given to smtpd_accept). */
	const struct smtpd_profile *profiles;
	uint32_t profile_count;
	struct tls_server_slot *tls;        /* the server contexts, or NULL without TLS */
	struct passwd_slot *passwd;         /* the AUTH users in force, or NULL without AUTH */
	struct workpool *workpool;          /* verifies passwords; set with passwd */
};

/* Start-up: registers the commit event op and the stop hook on r. Returns 0 or -ENOMEM. */
int smtpd_init(struct ring *r, const struct smtpd_params *p, struct smtpd **out);

void smtpd_fini(struct smtpd *d);

/* A connection accepted on listener `listener`: greets it. Takes fd; on no free slot answers
 * 421 4.7.0 and closes. While the shard stops, answers 421 4.3.2 and closes. smtpd is the
 * struct smtpd. */
void smtpd_accept(void *smtpd, int fd, uint32_t listener);   /* a listen_accept_fn */

const struct smtpd_stats *smtpd_stats(const struct smtpd *d);
#endif
