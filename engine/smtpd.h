/* engine/smtpd.h - the SMTP server session: proto/smtp_server on a connection of the transport.
 *
 * One session per accepted connection, in slots allocated on first use and reused (the
 * smtp_server arena inside each stays untouched until a session writes its envelope). The
 * session feeds the state machine, sends its replies, builds each message (queue id, Received:
 * header, body) and hands it to the spool at COMMIT; the spool's verdict comes back as a posted
 * event with the session's user_data, and only then does the machine say 250 (or 451/452).
 *
 * Each listener has its own profile (smtp_server_config): port 25 style, submission (587) or
 * implicit TLS (465); the session runs with its listener's profile. Owned by one shard. */
#ifndef RINGMTA_ENGINE_SMTPD_H
#define RINGMTA_ENGINE_SMTPD_H
#include <stdint.h>

#include "base/ring.h"
#include "engine/conn.h"
#include "proto/smtp_server.h"

struct config;
struct policy;
struct spool;
struct smtpd;

struct smtpd_stats {
	uint64_t messages_committed;
};

struct smtpd_params {
	const struct config *cfg;
	const struct policy *policy;
	struct spool *spool;
	struct conn_pool *conns;
	/* One profile per listener index (as given to smtpd_accept); the rcpt_check member is
	 * filled in by smtpd_init. */
	const struct smtp_server_config *profiles;
	uint32_t profile_count;
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
