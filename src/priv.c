/*
 * priv.c: becoming the unprivileged user (what and when: priv.h).
 *
 * Owns: the user database look-ups for `user:` and `group:`, making the spool directory the
 * user's, the switch of ids, and clearing inherited capabilities. Does not decide whether to
 * drop (main.c does: root with `user:` drops, root without it needs --allow-root) and does not
 * open the spool (spool.c does, as the user, after the drop).
 *
 * Start reading at priv_drop(). The tree walk (priv_chown_tree) is careful because it runs as
 * root over a directory the unprivileged user may have written to: it works on file
 * descriptors (O_PATH, O_NOFOLLOW, fchownat(AT_EMPTY_PATH)), so that no name it checked can be
 * swapped for a symbolic link before it acts on it.
 */
#include "petrel/priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "petrel/log.h"

#define PRIV_TREE_DEPTH 8   /* the spool is two levels deep (slots/<n>); anything deeper is odd */
#define PRIV_PATH_LOG   512 /* a path inside the tree, as quoted in messages */

static int priv_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *priv_name_syntax(const char *name);
static int priv_mkdir_p(const char *dir, char **err);
static int priv_chown_tree(int dirfd, const char *rel, dev_t dev, unsigned depth,
                           const struct priv_user *u, char **err);
static int priv_chown_entry(int dirfd, const char *name, const char *rel, dev_t dev, unsigned depth,
                            const struct priv_user *u, char **err);

/* Set *err (malloc'd; NULL if memory ran out) and return -1. */
static int
priv_fail(char **err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) == -1)
		*err = NULL;
	va_end(ap);
	return -1;
}

/*
 * The names useradd(8) and groupadd(8) accept by default (a subset of what systemd allows): a
 * letter or '_', then letters, digits, '_', '.' or '-'. All digits would read as an id.
 */
static const char *
priv_name_syntax(const char *name)
{
	static const char *const why = "only letters, digits, '_', '.' and '-', at most 32, "
	                               "starting with a letter or '_'";
	size_t n = strlen(name), i;
	char c;

	if (n == 0 || n > PRIV_NAME_MAX)
		return why;
	for (i = 0; i < n; i++) {
		c = name[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
			continue;
		if (i > 0 && ((c >= '0' && c <= '9') || c == '.' || c == '-'))
			continue;
		return why;
	}
	return NULL;
}

const char *
priv_user_unusable(const char *name)
{
	const struct passwd *pw;
	const char *why;

	if ((why = priv_name_syntax(name)) != NULL)
		return why;
	if ((pw = getpwnam(name)) == NULL)
		return "no such user";
	if (pw->pw_uid == 0)
		return "it is root (uid 0), which would drop nothing";
	return NULL;
}

const char *
priv_group_unusable(const char *name)
{
	const struct group *gr;
	const char *why;

	if ((why = priv_name_syntax(name)) != NULL)
		return why;
	if ((gr = getgrnam(name)) == NULL)
		return "no such group";
	if (gr->gr_gid == 0)
		return "it is gid 0 (root's group), which would drop nothing";
	return NULL;
}

int
priv_resolve(const char *user, const char *group, struct priv_user *out, char **err)
{
	const struct passwd *pw;
	const struct group *gr;
	const char *why;

	*err = NULL;
	memset(out, 0, sizeof(*out));
	if ((why = priv_user_unusable(user)) != NULL)
		return priv_fail(err, "user %s: %s", user, why);
	if ((pw = getpwnam(user)) == NULL) /* gone since the check: a race with userdel */
		return priv_fail(err, "user %s: no such user", user);
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->name, sizeof(out->name), "%s", user);
	if (group != NULL) {
		if ((why = priv_group_unusable(group)) != NULL)
			return priv_fail(err, "group %s: %s", group, why);
		if ((gr = getgrnam(group)) == NULL)
			return priv_fail(err, "group %s: no such group", group);
		out->gid = gr->gr_gid;
		snprintf(out->group, sizeof(out->group), "%s", group);
		return 0;
	}
	if (out->gid == 0)
		return priv_fail(err,
		                 "user %s: its primary group is gid 0 (root's); set group:", user);
	if ((gr = getgrgid(out->gid)) != NULL)
		snprintf(out->group, sizeof(out->group), "%s", gr->gr_name);
	else
		snprintf(out->group, sizeof(out->group), "%u", (unsigned)out->gid);
	return 0;
}

/* mkdir -p: missing parents 0755 (whatever the umask: the user must get through them), the
 * directory itself 0750. */
static int
priv_mkdir_p(const char *dir, char **err)
{
	char buf[PATH_MAX];
	size_t n = strlen(dir), i;

	if (n == 0 || n >= sizeof(buf))
		return priv_fail(err, "spool %s: bad directory name", dir);
	memcpy(buf, dir, n + 1);
	for (i = 1; i < n; i++) {
		if (buf[i] != '/' || buf[i - 1] == '/')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) == 0) {
			if (chmod(buf, 0755) == -1)
				return priv_fail(err, "spool: chmod %s: %s", buf, strerror(errno));
		} else if (errno != EEXIST) {
			return priv_fail(err, "spool: cannot create %s: %s", buf, strerror(errno));
		}
		buf[i] = '/';
	}
	if (mkdir(dir, 0750) == -1 && errno != EEXIST)
		return priv_fail(err, "spool: cannot create %s: %s", dir, strerror(errno));
	return 0;
}

int
priv_prepare_dir(const char *dir, const struct priv_user *u, char **err)
{
	struct stat st;
	int fd = -1;

	*err = NULL;
	if (priv_mkdir_p(dir, err) == -1)
		return -1;
	/* `dir` itself may be a symbolic link (the administrator's choice); inside it, none is
	 * followed. */
	if (stat(dir, &st) == -1)
		return priv_fail(err, "spool %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return priv_fail(err, "spool %s: not a directory", dir);
	if (st.st_uid == u->uid)
		return 0;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return priv_fail(err, "spool %s: %s", dir, strerror(errno));
	if (priv_chown_tree(fd, "", st.st_dev, 0, u, err) == -1)
		goto fail;
	/* The top last: if the walk stopped half-way, the next start walks again. */
	if (fchown(fd, u->uid, u->gid) == -1) {
		priv_fail(err, "spool %s: chown to %s: %s", dir, u->name, strerror(errno));
		goto fail;
	}
	close(fd);
	log_info("spool dir=%s given to user=%s group=%s", dir, u->name, u->group);
	return 0;

fail:
	if (*err != NULL) {
		char *full = NULL;

		if (asprintf(&full, "cannot give spool %s to user %s: %s", dir, u->name, *err) !=
		    -1) {
			free(*err);
			*err = full;
		}
	}
	close(fd);
	return -1;
}

/* Every entry of the open directory `dirfd` (reached as `rel`, for messages). */
static int
priv_chown_tree(int dirfd, const char *rel, dev_t dev, unsigned depth, const struct priv_user *u,
                char **err)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1)
		return priv_fail(err, "%s: %s", *rel ? rel : ".", strerror(errno));
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return priv_fail(err, "%s: %s", *rel ? rel : ".", strerror(errno));
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (priv_chown_entry(dirfd, de->d_name, rel, dev, depth, u, err) == -1) {
			closedir(d);
			return -1;
		}
	}
	if (errno != 0) {
		priv_fail(err, "%s: %s", *rel ? rel : ".", strerror(errno));
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

/* One entry: a directory is walked, then chowned; a regular file with one link is chowned. */
static int
priv_chown_entry(int dirfd, const char *name, const char *rel, dev_t dev, unsigned depth,
                 const struct priv_user *u, char **err)
{
	char path[PRIV_PATH_LOG];
	struct stat st, st2;
	int fd, sub = -1, rc = -1;

	snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", name);
	/* O_PATH | O_NOFOLLOW pins the inode itself, even a symbolic link, without opening it. */
	if ((fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		return priv_fail(err, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) == -1) {
		priv_fail(err, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		if (st.st_dev != dev) {
			log_warn("spool %s: another file system, left as it is", path);
			rc = 0;
			goto out;
		}
		if (depth + 1 >= PRIV_TREE_DEPTH) {
			priv_fail(err, "%s: directories nested too deep", path);
			goto out;
		}
		sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub == -1 || fstat(sub, &st2) == -1) {
			priv_fail(err, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (st2.st_ino != st.st_ino || st2.st_dev != st.st_dev) {
			priv_fail(err, "%s: replaced while being walked", path);
			goto out;
		}
		if (priv_chown_tree(sub, path, dev, depth + 1, u, err) == -1)
			goto out;
	} else if (!S_ISREG(st.st_mode)) {
		rc = 0; /* symbolic links, sockets, fifos, devices: not petrel's, left alone */
		goto out;
	} else if (st.st_nlink > 1) {
		log_warn("spool %s: a regular file with %ju links, left as it is", path,
		         (uintmax_t)st.st_nlink);
		rc = 0;
		goto out;
	}
	if ((st.st_uid != u->uid || st.st_gid != u->gid) &&
	    fchownat(fd, "", u->uid, u->gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
		priv_fail(err, "chown %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;

out:
	if (sub != -1)
		close(sub);
	close(fd);
	return rc;
}

int
priv_drop(const struct priv_user *u, char **err)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	*err = NULL;
	/* Groups first, then the gid, then the uid: each step needs the privilege the next one
	 * takes away. */
	if (initgroups(u->name, u->gid) == -1)
		return priv_fail(err, "initgroups(%s, %u): %s", u->name, (unsigned)u->gid,
		                 strerror(errno));
	if (setgid(u->gid) == -1)
		return priv_fail(err, "setgid(%u): %s", (unsigned)u->gid, strerror(errno));
	if (setuid(u->uid) == -1)
		return priv_fail(err, "setuid(%u): %s", (unsigned)u->uid, strerror(errno));
	if (getresuid(&ruid, &euid, &suid) == -1 || getresgid(&rgid, &egid, &sgid) == -1)
		return priv_fail(err, "getresuid: %s", strerror(errno));
	if (ruid != u->uid || euid != u->uid || suid != u->uid || getuid() != u->uid ||
	    geteuid() != u->uid)
		return priv_fail(err, "still uid %u/%u/%u after setuid(%u)", (unsigned)ruid,
		                 (unsigned)euid, (unsigned)suid, (unsigned)u->uid);
	if (rgid != u->gid || egid != u->gid || sgid != u->gid)
		return priv_fail(err, "still gid %u/%u/%u after setgid(%u)", (unsigned)rgid,
		                 (unsigned)egid, (unsigned)sgid, (unsigned)u->gid);
	if (setuid(0) != -1 || seteuid(0) != -1)
		return priv_fail(err, "root could be regained after setuid(%u)", (unsigned)u->uid);
	return 0;
}

int
priv_drop_caps(char **err)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	bool any = false;
	size_t i;

	*err = NULL;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) == -1)
		return priv_fail(err, "capget: %s", strerror(errno));
	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		any = any || data[i].effective || data[i].permitted || data[i].inheritable;
	if (!any)
		return 0; /* ambient ones are a subset of the permitted ones */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 && errno != EINVAL)
		return priv_fail(err, "clearing ambient capabilities: %s", strerror(errno));
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) == -1)
		return priv_fail(err, "capset: %s", strerror(errno));
	return 1;
}
