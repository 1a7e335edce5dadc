/* conf/passwd.h - the AUTH users (auth_users_file) and password verification with crypt(3).
 *
 * The file is in Dovecot's passwd-file form, one user per line:
 *
 *   user:{SCHEME}hash[:more fields, ignored]      or      user:hash
 *
 * Accepted schemes (case-insensitive), all verified by libxcrypt's crypt_rn:
 *   {CRYPT}         any crypt(3) string libxcrypt accepts as current (not legacy): yescrypt $y$,
 *                   bcrypt $2b$/$2y$/$2a$, SHA-crypt $6$/$5$, scrypt $7$, gost-yescrypt $gy$
 *   {BLF-CRYPT}     bcrypt ($2...)
 *   {SHA512-CRYPT}  $6$
 * A bare hash is read as {CRYPT}. Refused at load, naming the line: any other scheme ({PLAIN},
 * {SSHA}, {SHA256-CRYPT}, ...), what libxcrypt calls legacy (DES, MD5-crypt, SHA256-crypt $5$,
 * NT, SunMD5), an empty hash, a repeated user, a user name
 * with a blank, a control character or more than PASSWD_USER_LEN_MAX octets. Blank lines and
 * lines starting with '#' are skipped. User names compare exactly (octet for octet).
 *
 * Loaded at start-up into a frozen table, read by any thread at once without locks, and read
 * again on SIGHUP: the new table is published in a struct passwd_slot (a mutex held for a
 * pointer swap or a reference; AUTH is rare) and the old one lives on until the last job that
 * took it is done. A file that fails to load leaves the published table as it was.
 * passwd_verify is slow by design (the hash's cost) and runs on the worker pool (base/workpool),
 * never on a shard: passwd_job_run is the job function.
 *
 * An unknown user is verified against a dummy hash with the settings (method, cost) of the
 * file's first entry, so that the answer and its timing do not tell whether the user exists; the
 * result is always "no". The comparison of the computed and the stored hash is constant-time.
 * Passwords are never logged, and the copies made here are wiped after use. */
#ifndef RINGMTA_CONF_PASSWD_H
#define RINGMTA_CONF_PASSWD_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/assert.h"
#include "base/slice.h"

#define PASSWD_USER_LEN_MAX          255u          /* RFC 4616 2: authcid up to 255 octets */
#define PASSWD_PASSWORD_LEN_MAX      255u          /* RFC 4616 2: passwd up to 255 octets */
#define PASSWD_HASH_LEN_MAX          383u          /* libxcrypt's CRYPT_OUTPUT_SIZE, less NUL */
#define PASSWD_USERS_MAX         1000000u          /* lines of auth_users_file */
#define PASSWD_FILE_SIZE_MAX   (256u << 20)        /* octets of auth_users_file */
#define PASSWD_LINE_MAX             1024u          /* the line `ringmta passwd` prints */

struct passwd_table;   /* opaque: defined in passwd.c */

/* Reads the users file at path into a table with one reference. Returns 0, or -1 with a message
 * naming file and line in err. */
MUST_USE int passwd_load(const char *path, struct passwd_table **out, char *err, size_t err_len);

/* The same from memory; name is the file name shown in errors. */
MUST_USE int passwd_load_buf(const char *name, struct slice text, struct passwd_table **out,
	char *err, size_t err_len);

/* Drops a reference; the last frees the table. NULL is ignored. */
void passwd_unref(struct passwd_table *t);

uint32_t passwd_count(const struct passwd_table *t);

/* Checks user's password: 0 if it matches, -EACCES if it does not or the user is unknown (same
 * cost either way), -EIO if crypt failed. Slow; thread-safe; reads t only. */
MUST_USE int passwd_verify(const struct passwd_table *t, struct slice user, struct slice password);

/* A fresh yescrypt hash of password (libxcrypt's default cost and a random salt), NUL-terminated
 * in out. Returns its length, or -EINVAL (empty, too long or holding a NUL), -EIO. */
MUST_USE int passwd_hash_new(struct slice password, char *out, size_t cap);

/* The table in force: replaced whole on SIGHUP. */
struct passwd_slot {
	pthread_mutex_t lock;
	struct passwd_table *cur;      /* the slot's own reference */
};

/* Takes over the caller's reference to first. */
void passwd_slot_init(struct passwd_slot *slot, struct passwd_table *first);
/* Publishes next (taking over the caller's reference); the old table goes with its last user. */
void passwd_slot_publish(struct passwd_slot *slot, struct passwd_table *next);
/* A new reference to the table in force (drop it with passwd_unref). Any thread. */
struct passwd_table *passwd_slot_get(struct passwd_slot *slot);
/* Drops the slot's reference (once nobody gets from it any more). */
void passwd_slot_fini(struct passwd_slot *slot);

/* A verification on the worker pool: the submitter fills it and keeps it until the completion;
 * passwd_job_run verifies against the table in force when the job was filled, wipes the
 * password, drops the table and returns passwd_verify's result. */
struct passwd_job {
	struct passwd_table *table;   /* a reference */
	uint16_t user_len;
	uint16_t password_len;
	uint8_t user[PASSWD_USER_LEN_MAX];
	uint8_t password[PASSWD_PASSWORD_LEN_MAX];
};

/* Fills job (copies user and password, takes a reference to slot's table; false if either is too
 * long: nothing copied or taken). */
MUST_USE bool passwd_job_init(struct passwd_job *job, struct passwd_slot *slot,
	struct slice user, struct slice password);

/* A filled job that will not run (the pool refused it): wipes it and drops its table. */
void passwd_job_cancel(struct passwd_job *job);

/* workpool_job_fn: arg is a struct passwd_job. */
int32_t passwd_job_run(void *arg);
#endif
