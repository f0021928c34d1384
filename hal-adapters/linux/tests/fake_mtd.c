/*
 * An LD_PRELOAD stand-in for a NOR MTD partition, for tests on machines
 * that cannot load the mtdram module (and mtdram is MTD_RAM, which
 * libubootenv refuses anyway).
 *
 * The path in $FAKE_MTD_PATH (e.g. /dev/mtd-test) is redirected to the
 * regular file $FAKE_MTD_FILE, which stat() then reports as a character
 * device. On descriptors opened that way:
 *   MEMGETINFO  answers MTD_NORFLASH, size = file size, erasesize =
 *               $FAKE_MTD_ERASE, writesize 1;
 *   MEMERASE    checks alignment and bounds (EINVAL otherwise) and fills
 *               the range with 0xff;
 *   MEMLOCK/MEMUNLOCK/MEMGETBADBLOCK succeed;
 *   write/pwrite/pwrite64 program like NOR: a write that needs a bit to go
 *               from 0 to 1 (no erase before it) fails with EIO and is
 *               logged to $FAKE_MTD_LOG.
 * Every open of the fake path is logged to $FAKE_MTD_LOG as
 * "open ro" or "open rw", so tests can check the access mode.
 *
 * Both libubootenv (fw_printenv/fw_setenv) and the updraft command reach
 * these calls through the C library, so both run their real MTD code.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <mtd/mtd-user.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096
static char tracked[MAX_FD];

static int is_fake(const char *path)
{
	const char *f = getenv("FAKE_MTD_PATH");
	return f && path && strcmp(path, f) == 0;
}

static unsigned long erase_size(void)
{
	const char *e = getenv("FAKE_MTD_ERASE");
	return e ? strtoul(e, NULL, 0) : 4096;
}

static void logf_(const char *fmt, ...)
{
	const char *p = getenv("FAKE_MTD_LOG");
	if (!p)
		return;
	FILE *f = fopen(p, "a");
	if (!f)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static void *real(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static int do_open(const char *sym, const char *path, int flags, mode_t mode)
{
	int (*r)(const char *, int, ...) = real(sym);
	int fake = is_fake(path);
	int fd = r(fake ? getenv("FAKE_MTD_FILE") : path, flags, mode);
	if (fd >= 0 && fd < MAX_FD)
		tracked[fd] = fake;
	if (fake)
		logf_("open %s", (flags & O_ACCMODE) == O_RDONLY ? "ro" : "rw");
	return fd;
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & O_CREAT) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	return do_open("open", path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & O_CREAT) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	return do_open("open64", path, flags, mode);
}

int close(int fd)
{
	int (*r)(int) = real("close");
	if (fd >= 0 && fd < MAX_FD)
		tracked[fd] = 0;
	return r(fd);
}

int stat(const char *path, struct stat *st)
{
	int (*r)(const char *, struct stat *) = real("stat");
	if (!is_fake(path))
		return r(path, st);
	int rc = r(getenv("FAKE_MTD_FILE"), st);
	if (rc == 0)
		st->st_mode = (st->st_mode & ~S_IFMT) | S_IFCHR;
	return rc;
}

/* libubootenv resolves the device path and checks it exists. */
char *realpath(const char *path, char *resolved)
{
	char *(*r)(const char *, char *) = real("realpath");
	if (!is_fake(path))
		return r(path, resolved);
	if (!resolved)
		return strdup(path);
	strcpy(resolved, path);
	return resolved;
}

int access(const char *path, int mode)
{
	int (*r)(const char *, int) = real("access");
	return r(is_fake(path) ? getenv("FAKE_MTD_FILE") : path, mode);
}

static int is_tracked(int fd)
{
	return fd >= 0 && fd < MAX_FD && tracked[fd];
}

static off_t file_size(int fd)
{
	struct stat st;
	int (*r)(int, struct stat *) = real("fstat");
	return r(fd, &st) == 0 ? st.st_size : 0;
}

/* Programs like NOR: fails when a bit would have to go from 0 to 1. */
static ssize_t program(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t (*rd)(int, void *, size_t, off_t) = real("pread64");
	ssize_t (*wr)(int, const void *, size_t, off_t) = real("pwrite64");
	unsigned char *cur = malloc(n ? n : 1);
	const unsigned char *nb = buf;
	if (!cur)
		return -1;
	if (rd(fd, cur, n, off) != (ssize_t)n) {
		free(cur);
		errno = EIO;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if ((cur[i] & nb[i]) != nb[i]) {
			logf_("0->1 at %#lx (%#x over %#x)", (unsigned long)(off + i),
			      nb[i], cur[i]);
			free(cur);
			errno = EIO;
			return -1;
		}
	}
	free(cur);
	return wr(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t (*r)(int, const void *, size_t) = real("write");
	if (!is_tracked(fd))
		return r(fd, buf, n);
	off_t (*seek)(int, off_t, int) = real("lseek");
	off_t off = seek(fd, 0, SEEK_CUR);
	ssize_t w = program(fd, buf, n, off);
	if (w > 0)
		seek(fd, off + w, SEEK_SET);
	return w;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t (*r)(int, const void *, size_t, off_t) = real("pwrite64");
	if (!is_tracked(fd))
		return r(fd, buf, n, off);
	return program(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite64(fd, buf, n, off);
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	int (*r)(int, unsigned long, ...) = real("ioctl");
	if (!is_tracked(fd))
		return r(fd, req, arg);
	unsigned long es = erase_size();
	off_t size = file_size(fd);
	if (req == MEMGETINFO) {
		struct mtd_info_user *i = arg;
		memset(i, 0, sizeof(*i));
		i->type = MTD_NORFLASH;
		i->flags = MTD_CAP_NORFLASH;
		i->size = (unsigned int)size;
		i->erasesize = (unsigned int)es;
		i->writesize = 1;
		return 0;
	}
	if (req == MEMERASE) {
		struct erase_info_user *e = arg;
		if (e->length == 0 || e->start % es || e->length % es ||
		    (off_t)e->start + (off_t)e->length > size) {
			logf_("bad erase %#x+%#x", e->start, e->length);
			errno = EINVAL;
			return -1;
		}
		ssize_t (*wr)(int, const void *, size_t, off_t) = real("pwrite64");
		unsigned char *ff = malloc(e->length);
		if (!ff)
			return -1;
		memset(ff, 0xff, e->length);
		ssize_t w = wr(fd, ff, e->length, e->start);
		free(ff);
		logf_("erase %#x+%#x", e->start, e->length);
		return w == (ssize_t)e->length ? 0 : -1;
	}
	if (req == MEMLOCK || req == MEMUNLOCK || req == MEMGETBADBLOCK)
		return 0;
	errno = ENOTTY;
	return -1;
}
