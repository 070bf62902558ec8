/*
 * priv.h: running without privileges (config keys `user:` and `group:`).
 *
 * Started as root, petrel does what needs root first (main.c): it binds its listeners (ports
 * below 1024) and reads the TLS key and the users file. Then priv_prepare_dir() makes the spool
 * directory and gives it to the user, and priv_drop() becomes that user for good: the real,
 * effective and saved ids all change, so there is no way back, and the kernel clears every
 * capability with them. Only then does petrel open the spool, start its threads (the spool's
 * sync thread, the Maildir and password workers) and read the rest (routes' password files).
 *
 * Started as the user itself (systemd's User= with AmbientCapabilities=CAP_NET_BIND_SERVICE,
 * see systemd/petrel.service.in), there is nothing to switch: priv_drop_caps() clears the
 * capabilities it was given once the listeners are bound.
 *
 * Threads: priv_drop() is meant to run while the process has one thread. It would also be
 * correct later: glibc applies setuid()/setgid()/setgroups() to every thread of the process
 * (the "setxid" signal), but petrel does not rely on it.
 */
#ifndef PETREL_PRIV_H
#define PETREL_PRIV_H

#include <sys/types.h>

#define PRIV_NAME_MAX 32 /* user and group names, as useradd(8) allows them by default */

/* The user petrel runs as, and its group. */
struct priv_user {
	uid_t uid;
	gid_t gid;
	char name[PRIV_NAME_MAX + 1];  /* the user's name: initgroups() and log lines */
	char group[PRIV_NAME_MAX + 1]; /* the group's name, for log lines */
};

/*
 * Why `name` cannot be the user petrel runs as, or NULL if it can: bad syntax (letters,
 * digits, '_', '.', '-', at most 32, not starting with a digit, '.' or '-'), no such user in
 * the user database, or uid 0. For config.c (`user:`), so that --check reports it.
 */
const char *priv_user_unusable(const char *name);

/* The same for `group:` (gid 0 is refused too). */
const char *priv_group_unusable(const char *name);

/*
 * Look up `user` and `group` (NULL: the user's primary group) into *out. Returns 0, or -1
 * with *err (malloc'd) saying what is wrong (the checks of priv_user_unusable, and a primary
 * group of gid 0 without `group:`).
 */
int priv_resolve(const char *user, const char *group, struct priv_user *out, char **err);

/*
 * As root, before priv_drop(): create `dir` if it is missing (missing parents 0755, `dir`
 * itself 0750) and make it and everything under it the user's (uid and gid). A directory that
 * the user owns already is left as it is (so is what is inside it: the user made it, and root
 * may not even be able to look inside under systemd's sandbox).
 *
 * The walk never follows a symbolic link, stays on the file system of `dir`, and leaves alone
 * whatever is not a directory or a regular file, and regular files with more than one link
 * (a hard link planted to make root chown a file elsewhere). Returns 0, or -1 with *err.
 */
int priv_prepare_dir(const char *dir, const struct priv_user *u, char **err);

/*
 * As root: initgroups() (the user's supplementary groups from the group database, such as
 * Debian's ssl-cert), setgid(), setuid(), in that order; then check that getresuid() and
 * getresgid() show only the user's ids and that setuid(0) fails. Returns 0, or -1 with *err:
 * petrel must not go on after a failure.
 */
int priv_drop(const struct priv_user *u, char **err);

/*
 * Not root: clear the capabilities the process was started with (ambient, inheritable,
 * permitted, effective), such as systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE once the
 * listeners are bound. Returns 1 if there were some, 0 if there were none, -1 with *err.
 */
int priv_drop_caps(char **err);

#endif
