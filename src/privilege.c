/* src/privilege.c - from root to mail_owner at start-up; see privilege.h. */
#include "src/privilege.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
privilege_resolve(const char *mail_owner, struct privilege *out, char *err, size_t err_len)
{
	if (getuid() != 0 && geteuid() != 0) {
		*out = (struct privilege){ .drop = false, .uid = geteuid(), .gid = getegid() };
		return 0;
	}
	errno = 0;
	const struct passwd *pw = getpwnam(mail_owner);
	if (pw == NULL) {
		snprintf(err, err_len, "mail_owner %s: %s (create it: useradd --system "
			"--no-create-home --shell /usr/sbin/nologin %s)", mail_owner,
			errno != 0 ? strerror(errno) : "no such user", mail_owner);
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		snprintf(err, err_len, "mail_owner %s: uid %u gid %u: ringmta does not serve as root",
			mail_owner, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
		return -1;
	}
	*out = (struct privilege){ .drop = true, .uid = pw->pw_uid, .gid = pw->pw_gid };
	return 0;
}

/* Gives the entries of the open directory dir_fd (path: for messages) to p, descending
 * `depth` more levels into real directories; dir_fd is closed. */
static int
privilege_chown_entries(const struct privilege *p, int dir_fd, const char *path, uint32_t depth,
	char *err, size_t err_len)
{
	DIR *dir = fdopendir(dir_fd);
	if (dir == NULL) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		close(dir_fd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;   /* gone meanwhile */
		if ((st.st_uid != p->uid || st.st_gid != p->gid)
			&& fchownat(dirfd(dir), de->d_name, p->uid, p->gid, AT_SYMLINK_NOFOLLOW) != 0) {
			snprintf(err, err_len, "%s/%s: chown: %s", path, de->d_name, strerror(errno));
			rc = -1;
		}
		if (rc != 0 || depth == 0 || !S_ISDIR(st.st_mode))
			continue;
		int sub = openat(dirfd(dir), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;   /* replaced by a link or gone meanwhile: not ours to follow */
		char sub_path[PATH_MAX];
		snprintf(sub_path, sizeof(sub_path), "%s/%s", path, de->d_name);
		rc = privilege_chown_entries(p, sub, sub_path, depth - 1, err, err_len);
	}
	closedir(dir);
	return rc;
}

int
privilege_chown_tree(const struct privilege *p, const char *dir, char *err, size_t err_len)
{
	if (!p->drop)
		return 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_len, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (fchown(fd, p->uid, p->gid) != 0) {
		snprintf(err, err_len, "%s: chown: %s", dir, strerror(errno));
		close(fd);
		return -1;
	}
	return privilege_chown_entries(p, fd, dir, PRIVILEGE_CHOWN_DEPTH - 1, err, err_len);
}

/* Every real, effective and saved id is the one wanted. */
static bool
privilege_is(uid_t uid, gid_t gid)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
		return false;
	return ru == uid && eu == uid && su == uid && rg == gid && eg == gid && sg == gid;
}

int
privilege_drop(const struct privilege *p, char *err, size_t err_len)
{
	if (!p->drop) {
		if (getuid() == 0 || geteuid() == 0) {
			snprintf(err, err_len, "running as root");
			return -1;
		}
		return 0;
	}
	ASSERT(p->uid != 0);
	ASSERT(p->gid != 0);
	if (setgroups(1, &p->gid) != 0 || setgid(p->gid) != 0 || setuid(p->uid) != 0) {
		snprintf(err, err_len, "giving up root for uid %u gid %u: %s", (unsigned)p->uid,
			(unsigned)p->gid, strerror(errno));
		return -1;
	}
	/* No way back: with every uid changed the kernel drops the capabilities too. */
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || !privilege_is(p->uid, p->gid)) {
		snprintf(err, err_len, "root could be regained after giving it up");
		return -1;
	}
	return 0;
}
