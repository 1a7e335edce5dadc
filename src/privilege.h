/* src/privilege.h - least privilege: root only for binding and opening, then mail_owner.
 *
 * Started as root, ringmta binds its listeners and opens its spool as root (the shards do that in
 * their set-up), hands spool_dir and maildir_root to mail_owner (its mailboxes are virtual
 * mailboxes of that one owner, as with Postfix's virtual(8)), then gives root up for good:
 * setgroups to mail_owner's group alone, setgid, setuid; afterwards setuid(0) must fail, or it
 * does not start. Started as another user (a developer's `make run`), it stays that user and
 * changes no owner. It never serves as root: a mail_owner of uid or gid 0 is a start-up error.
 *
 * Start-up only, on the main thread: glibc applies setgroups, setgid and setuid to every thread
 * of the process, and io_uring runs each request with the credentials of the thread that
 * submitted it, so the shards (set up, not yet serving) continue as mail_owner. */
#ifndef RINGMTA_SRC_PRIVILEGE_H
#define RINGMTA_SRC_PRIVILEGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/assert.h"

#define PRIVILEGE_CHOWN_DEPTH 2u   /* spool/<shard>/<segment>, mail/<box>/{tmp,new,cur} */

struct privilege {
	bool drop;          /* started as root: chown, then become uid/gid */
	uid_t uid;
	gid_t gid;
};

/* What to run as: mail_owner when the process is root, else the user it is. Returns 0, or -1
 * with a message in err (no such user, a user with uid or gid 0). */
MUST_USE int privilege_resolve(const char *mail_owner, struct privilege *out, char *err,
	size_t err_len);

/* Started as root: gives dir, and what lies in it down to PRIVILEGE_CHOWN_DEPTH levels, to
 * p->uid and p->gid, never following a symbolic link (a link itself changes owner, not what it
 * points to). Does nothing when p->drop is false. Returns 0, or -1 with a message in err. */
MUST_USE int privilege_chown_tree(const struct privilege *p, const char *dir, char *err,
	size_t err_len);

/* Started as root: becomes p->uid and p->gid with no supplementary group but p->gid, and checks
 * that there is no way back. Does nothing when p->drop is false, but even then refuses to go on
 * as root. Returns 0, or -1 with a message in err. */
MUST_USE int privilege_drop(const struct privilege *p, char *err, size_t err_len);
#endif
