/* conf/passwd.c - auth_users_file and crypt(3) verification; see passwd.h.
 *
 * The table: an array of entries (offsets into one block holding each user name and its
 * NUL-terminated hash), and an open-addressing index of entry numbers, at most half full. */
#include "conf/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PASSWD_SLOTS_MIN 16u
#define PASSWD_DUMMY_PASSWORD "ringmta: no such user"
#define PASSWD_DEFAULT_PREFIX "$y$"   /* yescrypt, libxcrypt's preferred method */

_Static_assert(PASSWD_HASH_LEN_MAX < CRYPT_OUTPUT_SIZE, "a stored hash fits crypt's output");
_Static_assert(PASSWD_PASSWORD_LEN_MAX < CRYPT_MAX_PASSPHRASE_SIZE, "crypt takes our passwords");
_Static_assert((uint64_t)PASSWD_FILE_SIZE_MAX + PASSWD_USERS_MAX * 2u < UINT32_MAX,
	"offsets into the block fit 32 bits");
_Static_assert(PASSWD_USER_LEN_MAX <= UINT16_MAX, "lengths fit the job's fields");

struct passwd_entry {
	uint32_t user_off;
	uint32_t hash_off;      /* NUL-terminated */
	uint16_t user_len;
	uint16_t hash_len;
};

struct passwd_table {
	atomic_uint refs;
	uint32_t count;
	uint32_t slot_mask;           /* slot count - 1, a power of two */
	uint32_t *slots;              /* 0: empty; else 1 + entry index */
	struct passwd_entry *entries;
	char *block;
	size_t block_len;
	char dummy[CRYPT_OUTPUT_SIZE];   /* setting for unknown users */
};

/* A scheme prefix and the crypt prefix it requires (empty: any current method). */
static const struct {
	const char *scheme;
	const char *prefix;
} passwd_schemes[] = {
	{ "CRYPT", "" },
	{ "BLF-CRYPT", "$2" },
	{ "SHA512-CRYPT", "$6$" },
};

/* FNV-1a. */
static uint32_t
passwd_hash_name(struct slice s)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < s.len; i++) {
		h ^= s.ptr[i];
		h *= 16777619u;
	}
	return h;
}

static struct slice
passwd_entry_user(const struct passwd_table *t, const struct passwd_entry *e)
{
	return slice_make(t->block + e->user_off, e->user_len);
}

/* The slot holding user, or the empty slot where it would go. */
static uint32_t
passwd_slot_find(const struct passwd_table *t, struct slice user)
{
	uint32_t i = passwd_hash_name(user) & t->slot_mask;
	for (uint32_t probes = 0; probes <= t->slot_mask; probes++) {
		uint32_t v = t->slots[i];
		if (v == 0 || slice_eq(passwd_entry_user(t, &t->entries[v - 1]), user))
			return i;
		i = (i + 1) & t->slot_mask;
	}
	ASSERT(!"passwd: table full");
	return 0;
}

/* 1 .. PASSWD_USER_LEN_MAX octets, no blank, control character or DEL (':' ends the field). */
static bool
passwd_user_valid(struct slice u)
{
	if (u.len == 0 || u.len > PASSWD_USER_LEN_MAX)
		return false;
	for (size_t i = 0; i < u.len; i++) {
		if (u.ptr[i] <= 0x20 || u.ptr[i] == 0x7f)
			return false;
	}
	return true;
}

/* Splits "{SCHEME}hash" or "hash"; returns the hash, or why it is refused in *why. */
static struct slice
passwd_parse_field(struct slice field, const char **why)
{
	const char *prefix = "";
	if (field.len > 0 && field.ptr[0] == '{') {
		const uint8_t *close = memchr(field.ptr, '}', field.len);
		if (close == NULL) {
			*why = "'{' without '}'";
			return field;
		}
		struct slice scheme = slice_sub(field, 1, (size_t)(close - field.ptr) - 1);
		field = slice_skip(field, (size_t)(close - field.ptr) + 1);
		size_t i = 0;
		while (i < ARRAY_LEN(passwd_schemes) && !slice_eq_nocase(scheme,
			slice_make(passwd_schemes[i].scheme, strlen(passwd_schemes[i].scheme))))
			i++;
		if (i == ARRAY_LEN(passwd_schemes)) {
			*why = "scheme not supported (CRYPT, BLF-CRYPT, SHA512-CRYPT)";
			return field;
		}
		prefix = passwd_schemes[i].prefix;
	}
	if (field.len == 0 || field.len > PASSWD_HASH_LEN_MAX)
		*why = "empty or over-long hash";
	else if (!slice_starts_with(field, slice_make(prefix, strlen(prefix))))
		*why = "hash does not match its scheme";
	return field;
}

/* The hash must be one libxcrypt takes as a current method (crypt_checksalt wants a string). */
static const char *
passwd_hash_refused(struct slice hash)
{
	char buf[PASSWD_HASH_LEN_MAX + 1];
	ASSERT(hash.len <= PASSWD_HASH_LEN_MAX);
	memcpy(buf, hash.ptr, hash.len);
	buf[hash.len] = '\0';
	if (memchr(hash.ptr, '\0', hash.len) != NULL)
		return "hash holds a NUL";
	switch (crypt_checksalt(buf)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_TOO_CHEAP:   /* a weak cost is the administrator's choice */
		return NULL;
	case CRYPT_SALT_METHOD_LEGACY:
		return "legacy crypt method refused (use yescrypt: ringmta passwd USER)";
	default:
		return "not a crypt(3) hash libxcrypt supports";
	}
}

static void
passwd_add(struct passwd_table *t, struct slice user, struct slice hash)
{
	uint32_t slot = passwd_slot_find(t, user);
	ASSERT(t->slots[slot] == 0);
	ASSERT(t->count < (t->slot_mask + 1) / 2);
	struct passwd_entry *e = &t->entries[t->count];
	e->user_off = (uint32_t)t->block_len;
	e->user_len = (uint16_t)user.len;
	memcpy(t->block + t->block_len, user.ptr, user.len);
	t->block_len += user.len;
	e->hash_off = (uint32_t)t->block_len;
	e->hash_len = (uint16_t)hash.len;
	memcpy(t->block + t->block_len, hash.ptr, hash.len);
	t->block_len += hash.len;
	t->block[t->block_len++] = '\0';
	t->slots[slot] = ++t->count;
}

/* One non-comment line; returns NULL or why it is refused. */
static const char *
passwd_line(struct passwd_table *t, struct slice line)
{
	const uint8_t *colon = memchr(line.ptr, ':', line.len);
	if (colon == NULL)
		return "expected user:hash";
	struct slice user = slice_sub(line, 0, (size_t)(colon - line.ptr));
	struct slice rest = slice_skip(line, user.len + 1);
	const uint8_t *end = memchr(rest.ptr, ':', rest.len);
	struct slice field = end == NULL ? rest : slice_sub(rest, 0, (size_t)(end - rest.ptr));
	if (!passwd_user_valid(user))
		return "bad user name (1..255 octets, no blank or control character)";
	const char *why = NULL;
	struct slice hash = passwd_parse_field(field, &why);
	if (why == NULL)
		why = passwd_hash_refused(hash);
	if (why != NULL)
		return why;
	if (t->slots[passwd_slot_find(t, user)] != 0)
		return "user listed twice";
	if (t->count == PASSWD_USERS_MAX)
		return "too many users";
	passwd_add(t, user, hash);
	return NULL;
}

static int
passwd_lines(struct passwd_table *t, const char *name, struct slice text, char *err,
	size_t err_len)
{
	uint32_t n = 0;
	while (text.len > 0) {
		n++;
		const uint8_t *lf = memchr(text.ptr, '\n', text.len);
		size_t len = lf == NULL ? text.len : (size_t)(lf - text.ptr);
		struct slice line = slice_sub(text, 0, len);
		text = slice_skip(text, lf == NULL ? len : len + 1);
		if (line.len > 0 && line.ptr[line.len - 1] == '\r')
			line.len--;
		if (line.len == 0 || line.ptr[0] == '#')
			continue;
		const char *why = passwd_line(t, line);
		if (why != NULL) {
			snprintf(err, err_len, "auth_users_file: %s:%u: %s", name, n, why);
			return -1;
		}
	}
	return 0;
}

/* The setting unknown users are verified against: the first entry's, or a fresh default. */
static int
passwd_dummy(struct passwd_table *t)
{
	if (t->count > 0) {
		const struct passwd_entry *e = &t->entries[0];
		memcpy(t->dummy, t->block + e->hash_off, (size_t)e->hash_len + 1);
		return 0;
	}
	return crypt_gensalt_rn(PASSWD_DEFAULT_PREFIX, 0, NULL, 0, t->dummy, sizeof(t->dummy))
		!= NULL ? 0 : -EIO;
}

int
passwd_load_buf(const char *name, struct slice text, struct passwd_table **out, char *err,
	size_t err_len)
{
	size_t lines = 1;
	for (size_t i = 0; i < text.len; i++)
		lines += text.ptr[i] == '\n';
	if (lines > 2u * PASSWD_USERS_MAX + 2u)
		lines = 2u * PASSWD_USERS_MAX + 2u;   /* more users than that is refused anyway */
	struct passwd_table *t = calloc(1, sizeof(*t));
	uint32_t slots = PASSWD_SLOTS_MIN;
	while (slots < 2 * lines)
		slots *= 2;
	if (t != NULL) {
		t->slots = calloc(slots, sizeof(t->slots[0]));
		t->entries = calloc(lines, sizeof(t->entries[0]));
		t->block = malloc(text.len + lines);
		t->slot_mask = slots - 1;
		atomic_init(&t->refs, 1);
	}
	int rc = -1;
	if (t == NULL || t->slots == NULL || t->entries == NULL || t->block == NULL)
		snprintf(err, err_len, "auth_users_file: %s: out of memory", name);
	else if (passwd_lines(t, name, text, err, err_len) != 0)
		rc = -1;   /* err says which line */
	else if (passwd_dummy(t) != 0)
		snprintf(err, err_len, "auth_users_file: %s: crypt_gensalt failed", name);
	else
		rc = 0;
	if (rc != 0) {
		passwd_unref(t);
		return -1;
	}
	*out = t;
	return 0;
}

/* Reads the whole file; returns its length or -errno (-EFBIG: larger than the limit). */
static long
passwd_read_file(const char *path, uint8_t **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	long rc = 0;
	if (fstat(fd, &st) != 0)
		rc = -errno;
	else if (st.st_size > (off_t)PASSWD_FILE_SIZE_MAX)
		rc = -EFBIG;
	uint8_t *buf = rc == 0 ? malloc((size_t)st.st_size + 1u) : NULL;
	if (rc == 0 && buf == NULL)
		rc = -ENOMEM;
	size_t len = 0;
	while (rc == 0 && len <= (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1u - len);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n == 0)
			break;
		else if (n > 0)
			len += (size_t)n;
	}
	if (rc == 0 && len > (size_t)st.st_size)
		rc = -EAGAIN;   /* it grew while being read */
	close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return (long)len;
}

int
passwd_load(const char *path, struct passwd_table **out, char *err, size_t err_len)
{
	uint8_t *buf = NULL;
	long len = passwd_read_file(path, &buf);
	if (len < 0) {
		snprintf(err, err_len, "auth_users_file: %s: %s", path,
			len == -EFBIG ? "larger than the limit" : strerror((int)-len));
		return -1;
	}
	int rc = passwd_load_buf(path, slice_make(buf, (size_t)len), out, err, err_len);
	free(buf);
	return rc;
}

void
passwd_unref(struct passwd_table *t)
{
	if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	free(t->slots);
	free(t->entries);
	free(t->block);
	free(t);
}

uint32_t
passwd_count(const struct passwd_table *t)
{
	return t->count;
}

/* Constant-time in the contents: every octet of the stored hash is looked at. */
static bool
passwd_same(const char *computed, const char *stored, size_t stored_len)
{
	size_t computed_len = strnlen(computed, CRYPT_OUTPUT_SIZE);
	volatile uint8_t diff = computed_len != stored_len;
	for (size_t i = 0; i < stored_len; i++) {
		uint8_t c = i < computed_len ? (uint8_t)computed[i] : 0;
		diff |= c ^ (uint8_t)stored[i];
	}
	return diff == 0;
}

int
passwd_verify(const struct passwd_table *t, struct slice user, struct slice password)
{
	uint32_t v = user.len <= PASSWD_USER_LEN_MAX ? t->slots[passwd_slot_find(t, user)] : 0;
	const struct passwd_entry *e = v != 0 ? &t->entries[v - 1] : NULL;
	const char *setting = e != NULL ? t->block + e->hash_off : t->dummy;
	/* A password crypt cannot take is checked as the dummy one, so it costs the same. */
	bool usable = password.len <= PASSWD_PASSWORD_LEN_MAX
		&& memchr(password.ptr, '\0', password.len) == NULL;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return -EIO;
	char phrase[PASSWD_PASSWORD_LEN_MAX + 1];
	size_t n = usable ? password.len : sizeof(PASSWD_DUMMY_PASSWORD) - 1;
	memcpy(phrase, usable ? (const char *)password.ptr : PASSWD_DUMMY_PASSWORD, n);
	phrase[n] = '\0';
	const char *out = crypt_rn(phrase, setting, cd, (int)sizeof(*cd));
	int rc = out == NULL ? -EIO
		: (e != NULL && usable && passwd_same(out, setting, e->hash_len)) ? 0 : -EACCES;
	explicit_bzero(phrase, sizeof(phrase));
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

int
passwd_hash_new(struct slice password, char *out, size_t cap)
{
	if (password.len == 0 || password.len > PASSWD_PASSWORD_LEN_MAX
		|| memchr(password.ptr, '\0', password.len) != NULL)
		return -EINVAL;
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn(PASSWD_DEFAULT_PREFIX, 0, NULL, 0, setting, sizeof(setting)) == NULL)
		return -EIO;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return -EIO;
	char phrase[PASSWD_PASSWORD_LEN_MAX + 1];
	memcpy(phrase, password.ptr, password.len);
	phrase[password.len] = '\0';
	const char *h = crypt_rn(phrase, setting, cd, (int)sizeof(*cd));
	size_t len = h != NULL ? strlen(h) : 0;
	int rc = h == NULL || h[0] == '*' ? -EIO : len >= cap ? -ENOSPC : (int)len;
	if (rc > 0)
		memcpy(out, h, len + 1);
	explicit_bzero(phrase, sizeof(phrase));
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

bool
passwd_job_init(struct passwd_job *job, struct passwd_slot *slot, struct slice user,
	struct slice password)
{
	if (user.len > PASSWD_USER_LEN_MAX || password.len > PASSWD_PASSWORD_LEN_MAX)
		return false;
	job->table = passwd_slot_get(slot);
	job->user_len = (uint16_t)user.len;
	job->password_len = (uint16_t)password.len;
	if (user.len > 0)
		memcpy(job->user, user.ptr, user.len);   /* copy: the job outlives the session's buffer */
	if (password.len > 0)
		memcpy(job->password, password.ptr, password.len);
	return true;
}

void
passwd_job_cancel(struct passwd_job *job)
{
	explicit_bzero(job->password, sizeof(job->password));
	job->password_len = 0;
	passwd_unref(job->table);
	job->table = NULL;
}

int32_t
passwd_job_run(void *arg)
{
	struct passwd_job *job = arg;
	int rc = passwd_verify(job->table, slice_make(job->user, job->user_len),
		slice_make(job->password, job->password_len));
	passwd_job_cancel(job);
	return rc;
}

/* ---- the slot ---- */

void
passwd_slot_init(struct passwd_slot *slot, struct passwd_table *first)
{
	pthread_mutex_init(&slot->lock, NULL);
	slot->cur = first;
}

void
passwd_slot_publish(struct passwd_slot *slot, struct passwd_table *next)
{
	pthread_mutex_lock(&slot->lock);
	struct passwd_table *old = slot->cur;
	slot->cur = next;
	pthread_mutex_unlock(&slot->lock);
	passwd_unref(old);
}

struct passwd_table *
passwd_slot_get(struct passwd_slot *slot)
{
	pthread_mutex_lock(&slot->lock);
	struct passwd_table *t = slot->cur;
	unsigned before = atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&slot->lock);
	ASSERT(before > 0);
	return t;
}

void
passwd_slot_fini(struct passwd_slot *slot)
{
	passwd_unref(slot->cur);
	slot->cur = NULL;
	pthread_mutex_destroy(&slot->lock);
}
