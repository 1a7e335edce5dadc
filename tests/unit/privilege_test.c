/* tests/unit/privilege_test.c - from root to mail_owner: who, which files, and no way back.
 *
 * Criterion runs each test in a process of its own, so a test may give root up. The tests that
 * need root (to give it up, to change owners) skip otherwise. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/privilege.h"

static char err[512];

/* A user that is not root to become: nobody, as Debian has it. */
static struct privilege
nobody(void)
{
	const struct passwd *pw = getpwnam("nobody");
	if (pw == NULL)
		cr_skip_test("no user nobody");
	return (struct privilege){ .drop = true, .uid = pw->pw_uid, .gid = pw->pw_gid };
}

static void
need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root");
}

Test(privilege, root_resolves_mail_owner)
{
	need_root();
	struct privilege p;
	cr_assert_eq(privilege_resolve("nobody", &p, err, sizeof(err)), 0, "%s", err);
	cr_assert(p.drop);
	cr_assert_eq(p.uid, getpwnam("nobody")->pw_uid);
	cr_assert_eq(p.gid, getpwnam("nobody")->pw_gid);
}

Test(privilege, a_mail_owner_of_uid_0_or_none_is_refused)
{
	need_root();
	struct privilege p;
	cr_assert_eq(privilege_resolve("root", &p, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "mail_owner root: uid 0 gid 0: ringmta does not serve as root");
	cr_assert_eq(privilege_resolve("no-such-user-here", &p, err, sizeof(err)), -1);
	cr_assert(strstr(err, "mail_owner no-such-user-here: no such user (create it: useradd "
		"--system") != NULL, "%s", err);
}

Test(privilege, giving_up_root_leaves_no_way_back)
{
	need_root();
	struct privilege p = nobody();
	cr_assert_eq(privilege_drop(&p, err, sizeof(err)), 0, "%s", err);
	uid_t ru, eu, su;
	cr_assert_eq(getresuid(&ru, &eu, &su), 0);
	cr_assert(ru == p.uid && eu == p.uid && su == p.uid);
	gid_t groups[4];
	cr_assert_eq(getgroups(4, groups), 1);
	cr_assert_eq(groups[0], p.gid, "no supplementary group but mail_owner's");
	cr_assert_neq(setuid(0), 0);
	cr_assert_neq(seteuid(0), 0);
	cr_assert_neq(setgid(0), 0);
	cr_assert_lt(open("/etc/shadow", O_RDONLY), 0);
}

Test(privilege, an_ordinary_user_stays_itself_and_is_never_root)
{
	need_root();
	struct privilege p = nobody();
	cr_assert_eq(setgid(p.gid), 0);
	cr_assert_eq(setuid(p.uid), 0);
	struct privilege self;
	cr_assert_eq(privilege_resolve("ringmta-is-not-looked-up", &self, err, sizeof(err)), 0);
	cr_assert_not(self.drop);
	cr_assert_eq(self.uid, p.uid);
	cr_assert_eq(privilege_drop(&self, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(privilege_chown_tree(&self, "/nonexistent", err, sizeof(err)), 0,
		"nothing to change for an ordinary user");
}

Test(privilege, still_root_without_dropping_is_refused)
{
	need_root();
	struct privilege p = { .drop = false };
	cr_assert_eq(privilege_drop(&p, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "running as root");
}

static void
touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "%s", path);
	close(fd);
}

static uid_t
owner(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "%s", path);
	return st.st_uid;
}

Test(privilege, the_tree_changes_owner_two_levels_deep_and_follows_no_link)
{
	need_root();
	struct privilege p = nobody();
	char root[] = "/tmp/ringmta-priv-XXXXXX", outside[] = "/tmp/ringmta-out-XXXXXX";
	cr_assert_not_null(mkdtemp(root));
	cr_assert_not_null(mkdtemp(outside));
	char path[256], target[256];
	snprintf(target, sizeof(target), "%s/victim", outside);
	touch(target);
	snprintf(path, sizeof(path), "%s/0", root);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/0/0000000000000000.log", root);
	touch(path);
	snprintf(path, sizeof(path), "%s/0/deeper", root);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/0/deeper/third", root);
	touch(path);
	snprintf(path, sizeof(path), "%s/link", root);
	cr_assert_eq(symlink(target, path), 0);
	snprintf(path, sizeof(path), "%s/dirlink", root);
	cr_assert_eq(symlink(outside, path), 0);
	cr_assert_eq(privilege_chown_tree(&p, root, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(owner(root), p.uid);
	snprintf(path, sizeof(path), "%s/0", root);
	cr_assert_eq(owner(path), p.uid);
	snprintf(path, sizeof(path), "%s/0/0000000000000000.log", root);
	cr_assert_eq(owner(path), p.uid);
	snprintf(path, sizeof(path), "%s/0/deeper", root);
	cr_assert_eq(owner(path), p.uid);
	snprintf(path, sizeof(path), "%s/0/deeper/third", root);
	cr_assert_eq(owner(path), 0, "deeper than PRIVILEGE_CHOWN_DEPTH: left alone");
	snprintf(path, sizeof(path), "%s/link", root);
	cr_assert_eq(owner(path), p.uid, "the link itself");
	cr_assert_eq(owner(target), 0, "not what it points to");
	cr_assert_eq(owner(outside), 0, "a linked directory is not entered");
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", root, outside);
	cr_assert_eq(system(cmd), 0);
}
