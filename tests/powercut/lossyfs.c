/* tests/powercut/lossyfs.c - a FUSE file system that loses what was not made durable.
 *
 * lossyfs [--model=strict|ext4] [--real-sync] [--fail-fsync=N] [--fail-fsyncdir=N]
 *         [--fail-path=PREFIX] [--debug] BACKING MOUNTPOINT
 *
 * Every operation goes through to BACKING/data at once (the "live" state: what a running program
 * reads back, like the page cache). Beside it, lossyfs keeps in memory what a power cut would
 * undo: for each file, its durable size and the durable contents of every 4 KiB block that was
 * overwritten or cut off since its last fsync; for each directory, the durable target of every
 * name that was added, removed or replaced since its last fsync. Inodes that lose their last name
 * are moved into BACKING/.grave/<ino> rather than freed, so that a durable name can still point
 * at them. SIGUSR1 is the power cut: from that instant every operation fails with EIO and no
 * more is made durable (BACKING/.cut is created once it is in force). When the file system is
 * then unmounted, BACKING/data is rebuilt to hold exactly the durable state, and lossyfs exits.
 * Unmounting without a cut is a clean shutdown: everything stays as it is. SIGUSR2 prints the
 * counters to stderr.
 *
 * What each call makes durable (model "strict", the default; see tests/powercut/README.md):
 * - fsync(2) or fdatasync(2) of a file: its contents and size as they are at that moment.
 *   Not its name, nor the names of its parent directories.
 * - fsync(2) of a directory: the names in it and the inode each one points at, as they are at
 *   that moment (a name of a new file whose contents were never synced comes back empty).
 *   Not the directory's own name in its parent.
 * - nothing else: not close, rename, the passing of time, nor syncfs(2) or sync(2), which the
 *   kernel does not pass on to a FUSE server (no request reaches lossyfs; see the README).
 * Model "ext4" (data=ordered, one journal): in addition, every fsync or fdatasync of a file or
 * directory commits every directory change made before it (any name), as a journal commit does.
 * Contents of other files still need their own fsync (delayed allocation).
 *
 * No durable state lives on disk between runs: what BACKING/data holds at mount is all durable.
 * --real-sync also passes each fsync to the backing file, after the bookkeeping and outside the
 * lock (for timing comparisons only: the model does not depend on it).
 * --fail-fsync=N fails the first N fsync or fdatasync requests of files with EIO, and
 * --fail-fsyncdir=N the first N of directories, making nothing durable: a disk that reports a
 * write error (tests/integration/test_maildir_sync_error.py). With --fail-path=PREFIX, only those
 * of files and directories opened by a path (in the mount, "/a/b") that begins with PREFIX fail
 * or count. */
#define FUSE_USE_VERSION 31
#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#define BLOCK       4096u
#define NODE_BUCKETS 65536u
#define PATH_MAX_LEN 4096u

enum model { MODEL_STRICT, MODEL_EXT4 };

struct saved_block {
	uint64_t no;
	uint32_t len;
	uint8_t *data;
};

struct name_undo {      /* one name of a directory, changed since the directory's last fsync */
	char *name;          /* NULL: free slot */
	uint64_t prior;      /* the inode it durably points at; 0: durably absent */
};

/* What a power cut would undo on one inode. No node: the inode is clean (durable == live). */
struct node {
	uint64_t ino;
	bool is_dir;
	struct node *next;
	/* regular file */
	uint64_t durable_size;
	struct saved_block *blocks;
	size_t nblocks, blocks_cap;
	uint8_t *saved;      /* bitmap over the blocks below durable_size */
	/* directory */
	struct name_undo *names;
	size_t nnames, names_cap;   /* open addressing, names_cap a power of two */
};

struct fh {
	int fd;
	uint64_t ino;
	bool fail_path;      /* opened under --fail-path (a sync is told no path) */
};

struct stats {
	uint64_t fsync, fdatasync, fsyncdir, write, write_bytes, create, mkdir, unlink, rmdir,
		rename, link, symlink, truncate, open, read, failed_fsync, failed_fsyncdir;
	uint64_t cut_files_rolled_back, cut_names_restored, cut_names_dropped, cut_files,
		cut_dirs, cut_lost_inodes;
};

static struct {
	int backing_fd;
	int root_fd;         /* BACKING/data */
	int grave_fd;        /* BACKING/.grave */
	enum model model;
	bool real_sync;
	uint64_t fail_fsync;     /* fsyncs of files still to fail with EIO */
	uint64_t fail_fsyncdir;  /* ... of directories */
	const char *fail_path;   /* only under this prefix (NULL: anywhere) */
	pthread_mutex_t mu;
	volatile bool cut;   /* written under mu; read without it only to fail fast */
	struct node *buckets[NODE_BUCKETS];
	struct node **dirs;  /* the directory nodes, for a journal commit */
	size_t ndirs, dirs_cap;
	struct stats st;
} L = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
die(const char *what)
{
	fprintf(stderr, "lossyfs: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL) {
		fprintf(stderr, "lossyfs: out of memory\n");
		abort();
	}
	return p;
}

/* ---- nodes ---- */

static struct node **
node_slot(uint64_t ino)
{
	struct node **p = &L.buckets[(ino * 0x9E3779B97F4A7C15ull) >> 48];
	while (*p != NULL && (*p)->ino != ino)
		p = &(*p)->next;
	return p;
}

static struct node *
node_find(uint64_t ino)
{
	return *node_slot(ino);
}

static struct node *
node_add(uint64_t ino, bool is_dir)
{
	struct node **p = node_slot(ino);
	if (*p != NULL)
		return *p;
	struct node *n = xcalloc(1, sizeof(*n));
	n->ino = ino;
	n->is_dir = is_dir;
	*p = n;
	if (is_dir) {
		if (L.ndirs == L.dirs_cap) {
			L.dirs_cap = L.dirs_cap ? L.dirs_cap * 2 : 64;
			L.dirs = realloc(L.dirs, L.dirs_cap * sizeof(*L.dirs));
			if (L.dirs == NULL)
				abort();
		}
		L.dirs[L.ndirs++] = n;
	}
	return n;
}

static void
node_free(struct node *n)
{
	for (size_t i = 0; i < n->nblocks; i++)
		free(n->blocks[i].data);
	free(n->blocks);
	free(n->saved);
	for (size_t i = 0; i < n->names_cap; i++)
		free(n->names[i].name);
	free(n->names);
	free(n);
}

/* The inode became clean: durable == live. */
static void
node_drop(uint64_t ino)
{
	struct node **p = node_slot(ino);
	struct node *n = *p;
	if (n == NULL)
		return;
	*p = n->next;
	for (size_t i = 0; n->is_dir && i < L.ndirs; i++) {
		if (L.dirs[i] == n) {
			L.dirs[i] = L.dirs[--L.ndirs];
			break;
		}
	}
	node_free(n);
}

/* ---- file contents ---- */

/* The file node of an open file about to change; a clean file's durable size is its size now. */
static struct node *
file_node(int fd, uint64_t ino)
{
	struct node *n = node_find(ino);
	if (n != NULL)
		return n;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return NULL;
	n = node_add(ino, false);
	n->durable_size = (uint64_t)st.st_size;
	return n;
}

/* Keeps the durable bytes of block b before they change (once per block per sync). */
static int
save_block(struct node *n, int fd, uint64_t b)
{
	if (b * BLOCK >= n->durable_size)
		return 0;   /* beyond the durable size: a cut truncates it away */
	if (n->saved == NULL)
		n->saved = xcalloc((n->durable_size + BLOCK - 1) / BLOCK / 8 + 1, 1);
	if (n->saved[b / 8] & (1u << (b % 8)))
		return 0;
	uint64_t len = n->durable_size - b * BLOCK;
	if (len > BLOCK)
		len = BLOCK;
	uint8_t *data = xcalloc(1, len);
	ssize_t got = pread(fd, data, len, (off_t)(b * BLOCK));
	if (got < 0) {
		free(data);
		return -errno;
	}
	if (n->nblocks == n->blocks_cap) {
		n->blocks_cap = n->blocks_cap ? n->blocks_cap * 2 : 8;
		n->blocks = realloc(n->blocks, n->blocks_cap * sizeof(*n->blocks));
		if (n->blocks == NULL)
			abort();
	}
	n->blocks[n->nblocks++] = (struct saved_block){ b, (uint32_t)len, data };
	n->saved[b / 8] |= (uint8_t)(1u << (b % 8));
	return 0;
}

static int
save_range(struct node *n, int fd, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	for (uint64_t b = off / BLOCK; b <= (off + len - 1) / BLOCK; b++) {
		if (b * BLOCK >= n->durable_size)
			break;
		int rc = save_block(n, fd, b);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
file_truncate(int fd, uint64_t ino, uint64_t size)
{
	struct node *n = file_node(fd, ino);
	if (n == NULL)
		return -errno;
	if (size < n->durable_size) {
		int rc = save_range(n, fd, size, n->durable_size - size);
		if (rc < 0)
			return rc;
	}
	L.st.truncate++;
	return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}

/* ---- directory names ---- */

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static struct name_undo *
names_find(struct node *n, const char *name)
{
	if (n->names_cap == 0)
		return NULL;
	size_t mask = n->names_cap - 1;
	for (size_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
		if (n->names[i].name == NULL || strcmp(n->names[i].name, name) == 0)
			return &n->names[i];
	}
}

static void
names_put(struct node *n, char *name, uint64_t prior)
{
	if ((n->nnames + 1) * 2 > n->names_cap) {
		struct name_undo *old = n->names;
		size_t old_cap = n->names_cap;
		n->names_cap = old_cap ? old_cap * 2 : 16;
		n->names = xcalloc(n->names_cap, sizeof(*n->names));
		n->nnames = 0;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].name != NULL)
				names_put(n, old[i].name, old[i].prior);
		free(old);
	}
	struct name_undo *u = names_find(n, name);
	u->name = name;
	u->prior = prior;
	n->nnames++;
}

static const char *
rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path == '\0' ? "." : path;
}

/* Splits "/a/b/c" into the parent's relative path ("a/b", or ".") and the last name. */
static void
split(const char *path, char parent[PATH_MAX_LEN], const char **name)
{
	const char *r = rel(path);
	const char *slash = strrchr(r, '/');
	if (slash == NULL) {
		strcpy(parent, ".");
		*name = r;
	} else {
		size_t len = (size_t)(slash - r);
		if (len >= PATH_MAX_LEN)
			len = PATH_MAX_LEN - 1;
		memcpy(parent, r, len);
		parent[len] = '\0';
		*name = slash + 1;
	}
}

/* Before path's name changes: remembers what it durably pointed at, unless already known. */
static int
note_name(const char *path)
{
	char parent[PATH_MAX_LEN];
	const char *name;
	split(path, parent, &name);
	struct stat st;
	if (fstatat(L.root_fd, parent, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	struct node *n = node_add((uint64_t)st.st_ino, true);
	struct name_undo *known = names_find(n, name);
	if (known != NULL && known->name != NULL)
		return 0;
	uint64_t prior = 0;
	if (fstatat(L.root_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0)
		prior = (uint64_t)st.st_ino;
	char *copy = strdup(name);
	if (copy == NULL)
		abort();
	names_put(n, copy, prior);
	return 0;
}

/* Keeps the inode behind path alive under .grave/<ino> before its name goes away. */
static int
grave_keep(const char *path, const struct stat *st)
{
	char g[32];
	snprintf(g, sizeof(g), "%" PRIu64, (uint64_t)st->st_ino);
	if (S_ISDIR(st->st_mode))
		return renameat(L.root_fd, rel(path), L.grave_fd, g) == 0 ? 0 : -errno;
	if (linkat(L.root_fd, rel(path), L.grave_fd, g, 0) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A journal commit (model ext4): every directory change so far becomes durable. */
static void
commit_all_names(void)
{
	while (L.ndirs > 0)
		node_drop(L.dirs[L.ndirs - 1]->ino);
}

static bool
dir_is_empty(const char *path)
{
	int fd = openat(L.root_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return false;
	}
	bool empty = true;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = false;
	closedir(d);
	return empty;
}

/* ---- operations ---- */

#define LOCK() \
	do { \
		pthread_mutex_lock(&L.mu); \
		if (L.cut) { \
			pthread_mutex_unlock(&L.mu); \
			return -EIO; \
		} \
	} while (0)
#define UNLOCK() pthread_mutex_unlock(&L.mu)
#define FH(fi) ((struct fh *)(uintptr_t)(fi)->fh)

static void *
lfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 1;
	cfg->readdir_ino = 1;
	cfg->hard_remove = 1;
	cfg->nullpath_ok = 1;
	cfg->negative_timeout = 0;
	/* Every write must reach us when it is made, not when the kernel's cache decides. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	return NULL;
}

static int
lfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (L.cut)
		return -EIO;
	if (fi != NULL)
		return fstat(FH(fi)->fd, st) == 0 ? 0 : -errno;
	return fstatat(L.root_fd, rel(path), st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static int
lfs_access(const char *path, int mask)
{
	if (L.cut)
		return -EIO;
	return faccessat(L.root_fd, rel(path), mask, 0) == 0 ? 0 : -errno;
}

static int
lfs_readlink(const char *path, char *buf, size_t size)
{
	if (L.cut)
		return -EIO;
	ssize_t n = readlinkat(L.root_fd, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static bool under_fail_path(const char *path);

static struct fh *
fh_new(int fd, const char *path)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return NULL;
	struct fh *h = xcalloc(1, sizeof(*h));
	h->fd = fd;
	h->ino = (uint64_t)st.st_ino;
	h->fail_path = under_fail_path(path);
	return h;
}

/* Backing files are opened read-write when written (undo needs to read what a write replaces)
 * and never O_APPEND (the kernel gives the offset) nor O_TRUNC (done here, with its undo). */
static int
backing_flags(int flags)
{
	flags &= ~(O_APPEND | O_TRUNC | O_CREAT | O_EXCL | O_NOFOLLOW);
	if ((flags & O_ACCMODE) != O_RDONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags | O_CLOEXEC;
}

static int
lfs_open(const char *path, struct fuse_file_info *fi)
{
	LOCK();
	L.st.open++;
	int fd = openat(L.root_fd, rel(path), backing_flags(fi->flags));
	int rc = fd < 0 ? -errno : 0;
	struct fh *h = NULL;
	if (rc == 0 && (h = fh_new(fd, path)) == NULL)
		rc = -errno;
	if (rc == 0 && (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY)
		rc = file_truncate(fd, h->ino, 0);
	UNLOCK();
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		free(h);
		return rc;
	}
	fi->fh = (uintptr_t)h;
	return 0;
}

/* A new name belongs to the caller, as on any file system (the server runs as root; the daemon
 * creates its files as mail_owner). */
static int
own_by_caller(const char *path)
{
	const struct fuse_context *ctx = fuse_get_context();
	return fchownat(L.root_fd, rel(path), ctx->uid, ctx->gid, AT_SYMLINK_NOFOLLOW) == 0 ? 0
		: -errno;
}

static int
lfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	LOCK();
	L.st.create++;
	int rc = note_name(path);
	int fd = -1;
	struct fh *h = NULL;
	if (rc == 0) {
		fd = openat(L.root_fd, rel(path), backing_flags(fi->flags) | O_CREAT | O_EXCL, mode);
		if (fd >= 0) {
			rc = own_by_caller(path);
			if (rc == 0 && (h = fh_new(fd, path)) == NULL)
				rc = -errno;
			else if (rc == 0)
				node_add(h->ino, false)->durable_size = 0;   /* a new inode */
		} else if (errno == EEXIST && !(fi->flags & O_EXCL)) {
			fd = openat(L.root_fd, rel(path), backing_flags(fi->flags));
			if (fd < 0 || (h = fh_new(fd, path)) == NULL)
				rc = -errno;
			else if (fi->flags & O_TRUNC)
				rc = file_truncate(fd, h->ino, 0);
		} else {
			rc = -errno;
		}
	}
	UNLOCK();
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		free(h);
		return rc;
	}
	fi->fh = (uintptr_t)h;
	return 0;
}

static int
lfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	if (L.cut)
		return -EIO;
	__atomic_fetch_add(&L.st.read, 1, __ATOMIC_RELAXED);
	ssize_t n = pread(FH(fi)->fd, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int
lfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	LOCK();
	struct fh *h = FH(fi);
	struct node *n = file_node(h->fd, h->ino);
	int rc = n == NULL ? -errno : save_range(n, h->fd, (uint64_t)off, size);
	ssize_t w = 0;
	if (rc == 0) {
		w = pwrite(h->fd, buf, size, off);
		if (w < 0)
			rc = -errno;
	}
	L.st.write++;
	L.st.write_bytes += size;
	UNLOCK();
	return rc < 0 ? rc : (int)w;
}

static int
lfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	LOCK();
	int rc;
	if (fi != NULL) {
		rc = file_truncate(FH(fi)->fd, FH(fi)->ino, (uint64_t)size);
	} else {
		int fd = openat(L.root_fd, rel(path), O_RDWR | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0)
			rc = -errno;
		else
			rc = file_truncate(fd, (uint64_t)st.st_ino, (uint64_t)size);
		if (fd >= 0)
			close(fd);
	}
	UNLOCK();
	return rc;
}

static int
lfs_flush(const char *path, struct fuse_file_info *fi)
{
	return L.cut ? -EIO : 0;   /* close(2) makes nothing durable */
}

static int
lfs_release(const char *path, struct fuse_file_info *fi)
{
	struct fh *h = FH(fi);
	close(h->fd);
	free(h);
	return 0;
}

static bool
under_fail_path(const char *path)
{
	return L.fail_path == NULL || strncmp(path, L.fail_path, strlen(L.fail_path)) == 0;
}

/* Whether this sync is one of those to fail (--fail-fsync and the like); under mu. */
static bool
fail_now(uint64_t *left, const struct fh *h)
{
	if (*left == 0 || !h->fail_path)
		return false;
	(*left)--;
	return true;
}

static int
lfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	LOCK();
	struct fh *h = FH(fi);
	if (fail_now(&L.fail_fsync, h)) {
		L.st.failed_fsync++;
		UNLOCK();
		return -EIO;
	}
	if (datasync)
		L.st.fdatasync++;
	else
		L.st.fsync++;
	node_drop(h->ino);
	if (L.model == MODEL_EXT4)
		commit_all_names();
	UNLOCK();
	/* Timing only, outside the lock so that syncs overlap as on the disk below. */
	if (L.real_sync && (datasync ? fdatasync(h->fd) : fsync(h->fd)) != 0)
		return -errno;
	return 0;
}

static int
lfs_opendir(const char *path, struct fuse_file_info *fi)
{
	if (L.cut)
		return -EIO;
	int fd = openat(L.root_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct fh *h = fh_new(fd, path);
	if (h == NULL) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	fi->fh = (uintptr_t)h;
	return 0;
}

static int
lfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
	struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	if (L.cut)
		return -EIO;
	int fd = openat(FH(fi)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct stat st = { .st_ino = e->d_ino, .st_mode = (mode_t)DTTOIF(e->d_type) };
		if (fill(buf, e->d_name, &st, 0, 0) != 0)
			break;
	}
	closedir(d);
	return 0;
}

static int
lfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	return lfs_release(path, fi);
}

static int
lfs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	LOCK();
	struct fh *h = FH(fi);
	if (fail_now(&L.fail_fsyncdir, h)) {
		L.st.failed_fsyncdir++;
		UNLOCK();
		return -EIO;
	}
	L.st.fsyncdir++;
	node_drop(h->ino);
	if (L.model == MODEL_EXT4)
		commit_all_names();
	UNLOCK();
	if (L.real_sync && fsync(h->fd) != 0)
		return -errno;
	return 0;
}

static int
lfs_mkdir(const char *path, mode_t mode)
{
	LOCK();
	L.st.mkdir++;
	int rc = note_name(path);
	if (rc == 0 && mkdirat(L.root_fd, rel(path), mode) != 0)
		rc = -errno;
	if (rc == 0)
		rc = own_by_caller(path);
	UNLOCK();
	return rc;
}

static int
lfs_mknod(const char *path, mode_t mode, dev_t dev)
{
	LOCK();
	L.st.create++;
	int rc = note_name(path);
	if (rc == 0 && mknodat(L.root_fd, rel(path), mode, dev) != 0)
		rc = -errno;
	if (rc == 0)
		rc = own_by_caller(path);
	struct stat st;
	if (rc == 0 && S_ISREG(mode) && fstatat(L.root_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0)
		node_add((uint64_t)st.st_ino, false)->durable_size = 0;
	UNLOCK();
	return rc;
}

static int
lfs_symlink(const char *target, const char *path)
{
	LOCK();
	L.st.symlink++;
	int rc = note_name(path);
	if (rc == 0 && symlinkat(target, L.root_fd, rel(path)) != 0)
		rc = -errno;
	if (rc == 0)
		rc = own_by_caller(path);
	UNLOCK();
	return rc;
}

static int
lfs_link(const char *from, const char *to)
{
	LOCK();
	L.st.link++;
	int rc = note_name(to);
	if (rc == 0 && linkat(L.root_fd, rel(from), L.root_fd, rel(to), 0) != 0)
		rc = -errno;
	UNLOCK();
	return rc;
}

static int
lfs_unlink(const char *path)
{
	LOCK();
	L.st.unlink++;
	struct stat st;
	int rc = fstatat(L.root_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
	if (rc == 0 && S_ISDIR(st.st_mode))
		rc = -EISDIR;
	if (rc == 0)
		rc = note_name(path);
	if (rc == 0)
		rc = grave_keep(path, &st);
	if (rc == 0 && unlinkat(L.root_fd, rel(path), 0) != 0)
		rc = -errno;
	UNLOCK();
	return rc;
}

static int
lfs_rmdir(const char *path)
{
	LOCK();
	L.st.rmdir++;
	struct stat st;
	int rc = fstatat(L.root_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
	if (rc == 0 && !S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	if (rc == 0 && !dir_is_empty(path))
		rc = -ENOTEMPTY;
	if (rc == 0)
		rc = note_name(path);
	if (rc == 0)
		rc = grave_keep(path, &st);   /* moves it: its name is gone from the tree */
	UNLOCK();
	return rc;
}

static int
lfs_rename(const char *from, const char *to, unsigned int flags)
{
	LOCK();
	L.st.rename++;
	struct stat src, dst;
	int rc = fstatat(L.root_fd, rel(from), &src, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
	bool replaces = rc == 0 && fstatat(L.root_fd, rel(to), &dst, AT_SYMLINK_NOFOLLOW) == 0;
	if (rc == 0 && replaces && (flags & RENAME_NOREPLACE))
		rc = -EEXIST;
	if (rc == 0 && replaces && !(flags & RENAME_EXCHANGE) && dst.st_ino != src.st_ino) {
		if (S_ISDIR(dst.st_mode) && !S_ISDIR(src.st_mode))
			rc = -EISDIR;
		else if (!S_ISDIR(dst.st_mode) && S_ISDIR(src.st_mode))
			rc = -ENOTDIR;
		else if (S_ISDIR(dst.st_mode) && !dir_is_empty(to))
			rc = -ENOTEMPTY;
	}
	if (rc == 0)
		rc = note_name(from);
	if (rc == 0)
		rc = note_name(to);
	if (rc == 0 && replaces && !(flags & RENAME_EXCHANGE) && dst.st_ino != src.st_ino)
		rc = grave_keep(to, &dst);
	if (rc == 0 && renameat2(L.root_fd, rel(from), L.root_fd, rel(to), flags) != 0)
		rc = -errno;
	UNLOCK();
	return rc;
}

static int
lfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (L.cut)
		return -EIO;
	if (fi != NULL)
		return fchmod(FH(fi)->fd, mode) == 0 ? 0 : -errno;
	return fchmodat(L.root_fd, rel(path), mode, 0) == 0 ? 0 : -errno;
}

static int
lfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	if (L.cut)
		return -EIO;
	if (fi != NULL)
		return fchown(FH(fi)->fd, uid, gid) == 0 ? 0 : -errno;
	return fchownat(L.root_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static int
lfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	if (L.cut)
		return -EIO;
	if (fi != NULL)
		return futimens(FH(fi)->fd, tv) == 0 ? 0 : -errno;
	return utimensat(L.root_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static int
lfs_statfs(const char *path, struct statvfs *sv)
{
	if (L.cut)
		return -EIO;
	return fstatvfs(L.root_fd, sv) == 0 ? 0 : -errno;
}

static const struct fuse_operations lfs_ops = {
	.init = lfs_init,
	.getattr = lfs_getattr,
	.access = lfs_access,
	.readlink = lfs_readlink,
	.open = lfs_open,
	.create = lfs_create,
	.read = lfs_read,
	.write = lfs_write,
	.truncate = lfs_truncate,
	.flush = lfs_flush,
	.release = lfs_release,
	.fsync = lfs_fsync,
	.opendir = lfs_opendir,
	.readdir = lfs_readdir,
	.releasedir = lfs_releasedir,
	.fsyncdir = lfs_fsyncdir,
	.mkdir = lfs_mkdir,
	.mknod = lfs_mknod,
	.symlink = lfs_symlink,
	.link = lfs_link,
	.unlink = lfs_unlink,
	.rmdir = lfs_rmdir,
	.rename = lfs_rename,
	.chmod = lfs_chmod,
	.chown = lfs_chown,
	.utimens = lfs_utimens,
	.statfs = lfs_statfs,
};

/* ---- the power cut and the rebuild of the durable state ---- */

static void
print_stats(const char *when)
{
	const struct stats *s = &L.st;
	fprintf(stderr, "lossyfs: %s model=%s cut=%s fsync=%" PRIu64 " fdatasync=%" PRIu64
		" fsyncdir=%" PRIu64 " write=%" PRIu64 " write_bytes=%" PRIu64 " create=%" PRIu64
		" mkdir=%" PRIu64 " rename=%" PRIu64 " link=%" PRIu64 " unlink=%" PRIu64 " rmdir=%" PRIu64
		" truncate=%" PRIu64 " read=%" PRIu64 " files=%" PRIu64 " dirs=%" PRIu64
		" files_rolled_back=%" PRIu64 " names_restored=%" PRIu64 " names_dropped=%" PRIu64
		" lost_inodes=%" PRIu64 " failed_fsync=%" PRIu64 " failed_fsyncdir=%" PRIu64 "\n",
		when, L.model == MODEL_EXT4 ? "ext4" : "strict", L.cut ? "yes" : "no", s->fsync,
		s->fdatasync, s->fsyncdir, s->write, s->write_bytes, s->create, s->mkdir, s->rename,
		s->link, s->unlink, s->rmdir, s->truncate, s->read, s->cut_files, s->cut_dirs,
		s->cut_files_rolled_back, s->cut_names_restored, s->cut_names_dropped,
		s->cut_lost_inodes, s->failed_fsync, s->failed_fsyncdir);
}

static void *
signal_thread(void *arg)
{
	sigset_t *set = arg;
	for (;;) {
		int sig;
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGUSR2) {
			pthread_mutex_lock(&L.mu);
			print_stats("stats");
			pthread_mutex_unlock(&L.mu);
			continue;
		}
		pthread_mutex_lock(&L.mu);
		L.cut = true;   /* from here on nothing becomes durable: every operation fails */
		pthread_mutex_unlock(&L.mu);
		int fd = openat(L.backing_fd, ".cut", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "lossyfs: power cut\n");
	}
	return NULL;
}

struct ino_path {      /* where an inode of the live state can be found, by inode number */
	uint64_t ino;
	char *path;        /* relative to BACKING */
	mode_t mode;
	bool placed;       /* already given a place in the rebuilt tree */
	struct ino_path *next;
};

static struct ino_path *paths[NODE_BUCKETS];

static struct ino_path *
path_find(uint64_t ino)
{
	struct ino_path *p = paths[(ino * 0x9E3779B97F4A7C15ull) >> 48];
	while (p != NULL && p->ino != ino)
		p = p->next;
	return p;
}

static void
path_add(uint64_t ino, const char *path, mode_t mode)
{
	if (path_find(ino) != NULL)
		return;
	struct ino_path *p = xcalloc(1, sizeof(*p));
	p->ino = ino;
	p->path = strdup(path);
	p->mode = mode;
	size_t b = (ino * 0x9E3779B97F4A7C15ull) >> 48;
	p->next = paths[b];
	paths[b] = p;
}

/* Records where every inode under path (relative to BACKING) is. */
static void
index_tree(const char *path)
{
	struct stat st;
	if (fstatat(L.backing_fd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return;
	path_add((uint64_t)st.st_ino, path, st.st_mode);
	if (!S_ISDIR(st.st_mode))
		return;
	int fd = openat(L.backing_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char child[PATH_MAX_LEN];
		snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
		index_tree(child);
	}
	closedir(d);
}

struct dent {
	char *name;
	uint64_t ino;
};

/* The durable entries of directory ino: its live entries with every noted name undone. */
static struct dent *
durable_entries(uint64_t ino, size_t *count)
{
	struct ino_path *dp = path_find(ino);
	size_t n = 0, cap = 16;
	struct dent *v = xcalloc(cap, sizeof(*v));
	struct node *nd = node_find(ino);
	int fd = openat(L.backing_fd, dp->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (nd != NULL && nd->is_dir) {
			struct name_undo *u = names_find(nd, e->d_name);
			if (u != NULL && u->name != NULL)
				continue;   /* its durable state is the noted one, added below */
		}
		struct stat st;
		if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (n == cap)
			v = realloc(v, (cap *= 2) * sizeof(*v));
		v[n++] = (struct dent){ strdup(e->d_name), (uint64_t)st.st_ino };
	}
	if (d != NULL)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	for (size_t i = 0; nd != NULL && nd->is_dir && i < nd->names_cap; i++) {
		const struct name_undo *u = &nd->names[i];
		if (u->name == NULL)
			continue;
		if (u->prior == 0) {
			L.st.cut_names_dropped++;
			continue;
		}
		L.st.cut_names_restored++;
		if (n == cap)
			v = realloc(v, (cap *= 2) * sizeof(*v));
		v[n++] = (struct dent){ strdup(u->name), u->prior };
	}
	*count = n;
	return v;
}

/* Lays out directory ino's durable entries under out (relative to BACKING), recursively. */
static void
rebuild_dir(uint64_t ino, const char *out)
{
	size_t n;
	struct dent *v = durable_entries(ino, &n);
	for (size_t i = 0; i < n; i++) {
		char dst[PATH_MAX_LEN];
		snprintf(dst, sizeof(dst), "%s/%s", out, v[i].name);
		struct ino_path *p = path_find(v[i].ino);
		if (p == NULL) {
			fprintf(stderr, "lossyfs: durable name %s: inode %" PRIu64 " is gone\n", dst,
				v[i].ino);
			L.st.cut_lost_inodes++;
		} else if (S_ISDIR(p->mode)) {
			if (p->placed) {
				fprintf(stderr, "lossyfs: directory %s durable under two names; kept the "
					"first\n", dst);
			} else {
				p->placed = true;
				L.st.cut_dirs++;
				if (mkdirat(L.backing_fd, dst, p->mode & 07777) != 0)
					die("mkdir in rebuild");
				rebuild_dir(v[i].ino, dst);
			}
		} else {
			if (!p->placed)
				L.st.cut_files++;
			p->placed = true;
			if (linkat(L.backing_fd, p->path, L.backing_fd, dst, 0) != 0)
				die("link in rebuild");
		}
		free(v[i].name);
	}
	free(v);
}

/* Puts a file inode back to its durable contents and size. */
static void
restore_file(const struct node *n)
{
	struct ino_path *p = path_find(n->ino);
	if (p == NULL || !p->placed || !S_ISREG(p->mode))
		return;   /* no durable name: the inode is gone with the rest */
	int fd = openat(L.backing_fd, p->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open in rebuild");
	if (ftruncate(fd, (off_t)n->durable_size) != 0)
		die("truncate in rebuild");
	for (size_t i = 0; i < n->nblocks; i++) {
		const struct saved_block *b = &n->blocks[i];
		if (pwrite(fd, b->data, b->len, (off_t)(b->no * BLOCK)) != (ssize_t)b->len)
			die("write in rebuild");
	}
	close(fd);
	L.st.cut_files_rolled_back++;
}

static void
remove_tree(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = fd < 0 ? NULL : fdopendir(fd);
		struct dirent *e;
		while (d != NULL && (e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				remove_tree(fd, e->d_name);
		if (d != NULL)
			closedir(d);
		unlinkat(dirfd, name, AT_REMOVEDIR);
	} else {
		unlinkat(dirfd, name, 0);
	}
}

/* After the cut and the unmount: BACKING/data becomes exactly the durable state. */
static void
rebuild(void)
{
	index_tree("data");
	index_tree(".grave");
	remove_tree(L.backing_fd, "rebuild");
	struct stat st;
	if (fstatat(L.backing_fd, "data", &st, 0) != 0)
		die("stat data");
	if (mkdirat(L.backing_fd, "rebuild", st.st_mode & 07777) != 0)
		die("mkdir rebuild");
	path_find((uint64_t)st.st_ino)->placed = true;
	rebuild_dir((uint64_t)st.st_ino, "rebuild");
	for (size_t b = 0; b < NODE_BUCKETS; b++)
		for (const struct node *n = L.buckets[b]; n != NULL; n = n->next)
			if (!n->is_dir)
				restore_file(n);
	remove_tree(L.backing_fd, "old");
	if (renameat(L.backing_fd, "data", L.backing_fd, "old") != 0
		|| renameat(L.backing_fd, "rebuild", L.backing_fd, "data") != 0)
		die("rename in rebuild");
	remove_tree(L.backing_fd, "old");
}

static void
usage(void)
{
	fprintf(stderr, "usage: lossyfs [--model=strict|ext4] [--real-sync] [--fail-fsync=N] "
		"[--fail-fsyncdir=N] [--fail-path=PREFIX] [--debug] BACKING MOUNTPOINT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *backing = NULL, *mnt = NULL;
	bool debug = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--model=strict") == 0)
			L.model = MODEL_STRICT;
		else if (strcmp(argv[i], "--model=ext4") == 0)
			L.model = MODEL_EXT4;
		else if (strcmp(argv[i], "--real-sync") == 0)
			L.real_sync = true;
		else if (strncmp(argv[i], "--fail-fsync=", 13) == 0)
			L.fail_fsync = strtoull(argv[i] + 13, NULL, 10);
		else if (strncmp(argv[i], "--fail-fsyncdir=", 16) == 0)
			L.fail_fsyncdir = strtoull(argv[i] + 16, NULL, 10);
		else if (strncmp(argv[i], "--fail-path=", 12) == 0)
			L.fail_path = argv[i] + 12;
		else if (strcmp(argv[i], "--debug") == 0)
			debug = true;
		else if (argv[i][0] == '-')
			usage();
		else if (backing == NULL)
			backing = argv[i];
		else if (mnt == NULL)
			mnt = argv[i];
		else
			usage();
	}
	if (backing == NULL || mnt == NULL)
		usage();
	L.backing_fd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (L.backing_fd < 0)
		die(backing);
	remove_tree(L.backing_fd, ".grave");
	remove_tree(L.backing_fd, ".cut");
	remove_tree(L.backing_fd, "rebuild");
	remove_tree(L.backing_fd, "old");
	if ((mkdirat(L.backing_fd, "data", 0755) != 0 && errno != EEXIST)
		|| mkdirat(L.backing_fd, ".grave", 0700) != 0)
		die("mkdir in BACKING");
	L.root_fd = openat(L.backing_fd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	L.grave_fd = openat(L.backing_fd, ".grave", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (L.root_fd < 0 || L.grave_fd < 0)
		die("open BACKING/data");

	static sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);   /* every thread inherits it; one waits for them */
	pthread_t t;
	if (pthread_create(&t, NULL, signal_thread, &set) != 0)
		die("pthread_create");

	char *fargv[] = { argv[0], "-f", "-o",
		"fsname=lossyfs,subtype=lossyfs,allow_other,default_permissions",
		debug ? "-d" : "-f", (char *)mnt, NULL };
	int rc = fuse_main(6, fargv, &lfs_ops, NULL);
	pthread_mutex_lock(&L.mu);
	if (L.cut)
		rebuild();
	remove_tree(L.backing_fd, ".grave");
	print_stats("exit");
	fflush(stderr);
	_exit(rc);
}
