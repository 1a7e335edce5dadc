/* tests/unit/passwd_test.c - auth_users_file loading and crypt(3) verification. */
#include <criterion/criterion.h>
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/passwd.h"

#define TEXT_MAX 16384u

/* A hash of password with the method of prefix (cheap costs: the tests hash a lot). */
static void
make_hash(const char *prefix, unsigned long count, const char *password, char *out, size_t cap)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	cr_assert_not_null(crypt_gensalt_rn(prefix, count, NULL, 0, setting, sizeof(setting)));
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	const char *h = crypt_rn(password, setting, &cd, sizeof(cd));
	cr_assert_not_null(h);
	cr_assert_lt(strlen(h), cap);
	strcpy(out, h);
}

static struct passwd_table *
load_ok(const char *text)
{
	struct passwd_table *t = NULL;
	char err[512] = "";
	int rc = passwd_load_buf("users", slice_make(text, strlen(text)), &t, err, sizeof(err));
	cr_assert_eq(rc, 0, "load failed: %s", err);
	return t;
}

static void
load_fails(const char *text, const char *want)
{
	struct passwd_table *t = NULL;
	char err[512] = "";
	int rc = passwd_load_buf("users", slice_make(text, strlen(text)), &t, err, sizeof(err));
	cr_assert_eq(rc, -1, "loaded: %s", text);
	cr_assert(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

static int
verify(const struct passwd_table *t, const char *user, const char *password)
{
	return passwd_verify(t, slice_make(user, strlen(user)), slice_make(password,
		strlen(password)));
}

Test(passwd, every_accepted_scheme_verifies_right_and_refuses_wrong_passwords)
{
	char y[256], b[256], s6[256];
	char text[TEXT_MAX];
	cr_assert_gt(passwd_hash_new(SLICE_LIT("pw-y"), y, sizeof(y)), 0);
	make_hash("$2b$", 4, "pw-b", b, sizeof(b));
	make_hash("$6$", 1000, "pw-6", s6, sizeof(s6));
	snprintf(text, sizeof(text),
		"# users\n\n"
		"ycrypt:{CRYPT}%s\n"
		"bcrypt:{BLF-CRYPT}%s:1000:1000::/home/b:/bin/sh:extra=1\r\n"
		"sha512:{sha512-crypt}%s\n"
		"bare-y:%s\n"
		"bare-b:%s\n"
		"bare-6:%s",   /* no final newline */
		y, b, s6, y, b, s6);
	struct passwd_table *t = load_ok(text);
	cr_assert_eq(passwd_count(t), 6);
	static const char *const users[][2] = {
		{ "ycrypt", "pw-y" }, { "bcrypt", "pw-b" }, { "sha512", "pw-6" },
		{ "bare-y", "pw-y" }, { "bare-b", "pw-b" }, { "bare-6", "pw-6" },
	};
	for (size_t i = 0; i < ARRAY_LEN(users); i++) {
		cr_assert_eq(verify(t, users[i][0], users[i][1]), 0, "%s", users[i][0]);
		cr_assert_eq(verify(t, users[i][0], "wrong"), -EACCES, "%s", users[i][0]);
		cr_assert_eq(verify(t, users[i][0], ""), -EACCES);
	}
	cr_assert_eq(verify(t, "YCRYPT", "pw-y"), -EACCES, "user names compare exactly");
	passwd_unref(t);
}

Test(passwd, unknown_users_get_the_same_answer_and_pay_the_same_cost)
{
	char b[256], text[TEXT_MAX];
	make_hash("$2b$", 9, "secret", b, sizeof(b));   /* ~30 ms a check */
	snprintf(text, sizeof(text), "alice:%s\n", b);
	struct passwd_table *t = load_ok(text);
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(verify(t, "alice", "guess"), -EACCES);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(verify(t, "mallory", "guess"), -EACCES);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	double known = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	double unknown = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
	/* Generous bounds (a shared machine), but far from the microseconds of no hash at all. */
	cr_assert_gt(unknown, known * 0.4, "unknown %.4fs vs known %.4fs", unknown, known);
	cr_assert_lt(unknown, known * 2.5, "unknown %.4fs vs known %.4fs", unknown, known);
	passwd_unref(t);
}

Test(passwd, an_empty_file_loads_and_refuses_everyone)
{
	struct passwd_table *t = load_ok("# nobody yet\n");
	cr_assert_eq(passwd_count(t), 0);
	cr_assert_eq(verify(t, "anyone", "x"), -EACCES);
	passwd_unref(t);
}

Test(passwd, refused_lines_name_the_line_and_the_reason)
{
	char b[256], text[TEXT_MAX];
	make_hash("$2b$", 4, "x", b, sizeof(b));
	load_fails("a:{PLAIN}secret\n", "users:1: scheme not supported");
	load_fails("\n\na:{SSHA}abcd\n", "users:3: scheme not supported");
	load_fails("a:{CRYPT\n", "'{' without '}'");
	load_fails("a:abJnggxhB/yWI\n", "legacy");                 /* DES */
	load_fails("a:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/\n", "legacy");  /* MD5-crypt */
	load_fails("a:\n", "empty");
	load_fails("a:{CRYPT}\n", "empty");
	load_fails("no colon here\n", "expected user:hash");
	load_fails("a:$9$unknown\n", "not a crypt(3) hash");
	load_fails("a:{SHA256-CRYPT}$5$salt$x\n", "scheme not supported");
	load_fails("a:$5$saltsalt$hash\n", "legacy");   /* SHA256-crypt: legacy for libxcrypt */
	snprintf(text, sizeof(text), "a:{SHA512-CRYPT}%s\n", b);
	load_fails(text, "does not match its scheme");
	snprintf(text, sizeof(text), "a:%s\nb:%s\na:%s\n", b, b, b);
	load_fails(text, "users:3: user listed twice");
	snprintf(text, sizeof(text), "a b:%s\n", b);
	load_fails(text, "bad user name");
	snprintf(text, sizeof(text), ":%s\n", b);
	load_fails(text, "bad user name");
}

Test(passwd, user_name_at_the_limit_is_read_and_past_it_refused)
{
	char b[256], text[TEXT_MAX], user[PASSWD_USER_LEN_MAX + 2];
	make_hash("$2b$", 4, "pw", b, sizeof(b));
	memset(user, 'u', PASSWD_USER_LEN_MAX);
	user[PASSWD_USER_LEN_MAX] = '\0';
	snprintf(text, sizeof(text), "%s:%s\n", user, b);
	struct passwd_table *t = load_ok(text);
	cr_assert_eq(verify(t, user, "pw"), 0);
	user[PASSWD_USER_LEN_MAX] = 'u';
	user[PASSWD_USER_LEN_MAX + 1] = '\0';
	cr_assert_eq(verify(t, user, "pw"), -EACCES, "a longer name is nobody");
	passwd_unref(t);
	snprintf(text, sizeof(text), "%s:%s\n", user, b);
	load_fails(text, "bad user name");
}

Test(passwd, password_at_the_limit_works_and_past_it_or_with_nul_is_refused)
{
	char pw[PASSWD_PASSWORD_LEN_MAX + 2], b[256], text[TEXT_MAX];
	memset(pw, 'p', sizeof(pw));
	pw[PASSWD_PASSWORD_LEN_MAX] = '\0';
	make_hash("$2b$", 4, "short", b, sizeof(b));
	char y[256];
	cr_assert_gt(passwd_hash_new(slice_make(pw, PASSWD_PASSWORD_LEN_MAX), y, sizeof(y)), 0);
	snprintf(text, sizeof(text), "long:%s\nshort:%s\n", y, b);
	struct passwd_table *t = load_ok(text);
	cr_assert_eq(verify(t, "long", pw), 0);
	cr_assert_eq(passwd_verify(t, SLICE_LIT("long"), slice_make(pw, PASSWD_PASSWORD_LEN_MAX + 1)),
		-EACCES);
	cr_assert_eq(passwd_verify(t, SLICE_LIT("short"), SLICE_LIT("short\0tail")), -EACCES,
		"a NUL does not cut the password short");
	cr_assert_eq(passwd_hash_new(slice_make(pw, PASSWD_PASSWORD_LEN_MAX + 1), y, sizeof(y)),
		-EINVAL);
	cr_assert_eq(passwd_hash_new(SLICE_LIT(""), y, sizeof(y)), -EINVAL);
	cr_assert_eq(passwd_hash_new(SLICE_LIT("a\0b"), y, sizeof(y)), -EINVAL);
	passwd_unref(t);
}

Test(passwd, new_hashes_are_salted_yescrypt)
{
	char a[256], b[256];
	int n = passwd_hash_new(SLICE_LIT("same"), a, sizeof(a));
	cr_assert_gt(n, 0);
	cr_assert_eq((size_t)n, strlen(a));
	cr_assert(strncmp(a, "$y$", 3) == 0, "got %s", a);
	cr_assert_gt(passwd_hash_new(SLICE_LIT("same"), b, sizeof(b)), 0);
	cr_assert_str_neq(a, b, "a fresh salt each time");
	cr_assert_eq(passwd_hash_new(SLICE_LIT("same"), b, 8), -ENOSPC);
}

Test(passwd, a_job_verifies_and_wipes_the_password)
{
	char y[256], text[TEXT_MAX];
	cr_assert_gt(passwd_hash_new(SLICE_LIT("hunter2"), y, sizeof(y)), 0);
	snprintf(text, sizeof(text), "bob:%s\n", y);
	struct passwd_slot slot;
	passwd_slot_init(&slot, load_ok(text));
	struct passwd_job job;
	cr_assert(passwd_job_init(&job, &slot, SLICE_LIT("bob"), SLICE_LIT("hunter2")));
	cr_assert_eq(passwd_job_run(&job), 0);
	for (size_t i = 0; i < sizeof(job.password); i++)
		cr_assert_eq(job.password[i], 0);
	cr_assert_null(job.table, "the job let its table go");
	cr_assert(passwd_job_init(&job, &slot, SLICE_LIT("bob"), SLICE_LIT("hunter3")));
	cr_assert_eq(passwd_job_run(&job), -EACCES);
	char big[PASSWD_USER_LEN_MAX + 1];
	memset(big, 'x', sizeof(big));
	cr_assert_not(passwd_job_init(&job, &slot, slice_make(big, sizeof(big)), SLICE_LIT("p")));
	passwd_slot_fini(&slot);
}

/* SIGHUP: a new table serves new jobs; a job filled before the swap runs on the old one, which
 * lives until that job is done. */
Test(passwd, a_published_table_serves_new_jobs_and_the_old_one_finishes_its_own)
{
	char a[256], b[256], text[TEXT_MAX];
	cr_assert_gt(passwd_hash_new(SLICE_LIT("old-pw"), a, sizeof(a)), 0);
	cr_assert_gt(passwd_hash_new(SLICE_LIT("new-pw"), b, sizeof(b)), 0);
	snprintf(text, sizeof(text), "alice:%s\n", a);
	struct passwd_slot slot;
	passwd_slot_init(&slot, load_ok(text));
	struct passwd_job before, after;
	cr_assert(passwd_job_init(&before, &slot, SLICE_LIT("alice"), SLICE_LIT("old-pw")));
	snprintf(text, sizeof(text), "bob:%s\n", b);
	passwd_slot_publish(&slot, load_ok(text));
	cr_assert(passwd_job_init(&after, &slot, SLICE_LIT("bob"), SLICE_LIT("new-pw")));
	cr_assert_eq(passwd_job_run(&after), 0, "the new user");
	cr_assert_eq(passwd_job_run(&before), 0, "the job taken before the swap: the old table");
	cr_assert(passwd_job_init(&after, &slot, SLICE_LIT("alice"), SLICE_LIT("old-pw")));
	cr_assert_eq(passwd_job_run(&after), -EACCES, "alice is gone from the new table");
	struct passwd_job dropped;
	cr_assert(passwd_job_init(&dropped, &slot, SLICE_LIT("bob"), SLICE_LIT("new-pw")));
	passwd_job_cancel(&dropped);
	cr_assert_eq(dropped.password_len, 0);
	cr_assert_null(dropped.table);
	passwd_slot_fini(&slot);
}

Test(passwd, load_reads_a_file_and_names_a_missing_one)
{
	char y[256];
	cr_assert_gt(passwd_hash_new(SLICE_LIT("pw"), y, sizeof(y)), 0);
	char path[] = "/tmp/passwd_test_XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "carol:{CRYPT}%s\n", y);
	fclose(f);
	struct passwd_table *t = NULL;
	char err[512];
	cr_assert_eq(passwd_load(path, &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(verify(t, "carol", "pw"), 0);
	passwd_unref(t);
	unlink(path);
	cr_assert_eq(passwd_load(path, &t, err, sizeof(err)), -1);
	cr_assert(strstr(err, path) != NULL && strstr(err, "No such file") != NULL, "%s", err);
}
