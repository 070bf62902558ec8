/*
 * test_priv.c: priv.c, becoming the unprivileged user. The look-ups use Debian's own accounts
 * (root, daemon, nobody, nogroup). What needs root (chown, setuid, capset) is skipped, as a
 * passing test, when the suite does not run as root; Criterion runs each Test() in its own
 * process, so a test that drops privileges takes only itself down with it.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "petrel/priv.h"

Test(priv, user_and_group_checks)
{
	cr_expect_null(priv_user_unusable("nobody"));
	cr_expect_null(priv_user_unusable("daemon"));
	cr_expect_str_eq(priv_user_unusable("petrel-no-such-user"), "no such user");
	cr_expect_str_eq(priv_user_unusable("root"),
	                 "it is root (uid 0), which would drop nothing");
	cr_expect_not_null(priv_user_unusable("65534"), "a number is not a name");
	cr_expect_not_null(priv_user_unusable("-nobody"));
	cr_expect_not_null(priv_user_unusable(".x"));
	cr_expect_not_null(priv_user_unusable("no body"));
	cr_expect_not_null(priv_user_unusable(""));
	cr_expect_not_null(priv_user_unusable("abcdefghijabcdefghijabcdefghijabc"), "33 bytes");

	cr_expect_null(priv_group_unusable("nogroup"));
	cr_expect_str_eq(priv_group_unusable("petrel-no-such-group"), "no such group");
	cr_expect_str_eq(priv_group_unusable("root"),
	                 "it is gid 0 (root's group), which would drop nothing");
}

Test(priv, resolve)
{
	struct priv_user u;
	char *err = (char *)"untouched";

	cr_assert_eq(priv_resolve("nobody", NULL, &u, &err), 0, "%s", err);
	cr_expect_null(err);
	cr_expect_eq(u.uid, getpwnam("nobody")->pw_uid);
	cr_expect_eq(u.gid, getpwnam("nobody")->pw_gid, "the primary group");
	cr_expect_str_eq(u.name, "nobody");
	cr_expect_str_eq(u.group, getgrgid(u.gid)->gr_name);

	cr_assert_eq(priv_resolve("daemon", "nogroup", &u, &err), 0, "%s", err);
	cr_expect_eq(u.uid, getpwnam("daemon")->pw_uid);
	cr_expect_eq(u.gid, getgrnam("nogroup")->gr_gid, "group: wins");
	cr_expect_str_eq(u.group, "nogroup");

	cr_expect_eq(priv_resolve("root", NULL, &u, &err), -1);
	cr_expect_str_eq(err, "user root: it is root (uid 0), which would drop nothing");
	free(err);
	cr_expect_eq(priv_resolve("nobody", "petrel-no-such-group", &u, &err), -1);
	cr_expect_str_eq(err, "group petrel-no-such-group: no such group");
	free(err);
}

/* A fresh directory under /tmp that everybody can get through (the user must reach its spool). */
static void
test_priv_tmpdir(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/petrel-priv-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(chmod(dir, 0755), 0);
}

static void
test_priv_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_neq(fd, -1, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, "x\n", 2), 2);
	close(fd);
}

static void
test_priv_expect_owner(const char *path, uid_t uid, gid_t gid)
{
	struct stat st;

	cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
	cr_expect_eq(st.st_uid, uid, "%s: uid %u, want %u", path, (unsigned)st.st_uid,
	             (unsigned)uid);
	cr_expect_eq(st.st_gid, gid, "%s: gid %u, want %u", path, (unsigned)st.st_gid,
	             (unsigned)gid);
}

Test(priv, prepare_dir_creates_and_chowns)
{
	char dir[64], path[256], victim[256];
	struct priv_user u;
	struct stat st;
	char *err = NULL;

	if (geteuid() != 0)
		cr_skip_test("chown needs root");
	cr_assert_eq(priv_resolve("nobody", NULL, &u, &err), 0);
	test_priv_tmpdir(dir, sizeof(dir));

	/* Missing, with a missing parent: parent 0755 root, spool 0750 the user's. */
	snprintf(path, sizeof(path), "%s/var/spool", dir);
	cr_assert_eq(priv_prepare_dir(path, &u, &err), 0, "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0750);
	test_priv_expect_owner(path, u.uid, u.gid);
	snprintf(path, sizeof(path), "%s/var", dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0755, "parents stay root's, open to the user");
	test_priv_expect_owner(path, 0, 0);

	/* A root-made spool with a message; a symbolic link and a hard link planted in it. */
	snprintf(path, sizeof(path), "%s/old", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/old/slots", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/old/slots/0123456789abcdef", dir);
	test_priv_write(path);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	test_priv_write(victim);
	snprintf(path, sizeof(path), "%s/old/slots/symlink", dir);
	cr_assert_eq(symlink(victim, path), 0);
	snprintf(path, sizeof(path), "%s/old/hardlink", dir);
	cr_assert_eq(link(victim, path), 0);

	snprintf(path, sizeof(path), "%s/old", dir);
	cr_assert_eq(priv_prepare_dir(path, &u, &err), 0, "%s", err);
	test_priv_expect_owner(path, u.uid, u.gid);
	snprintf(path, sizeof(path), "%s/old/slots", dir);
	test_priv_expect_owner(path, u.uid, u.gid);
	snprintf(path, sizeof(path), "%s/old/slots/0123456789abcdef", dir);
	test_priv_expect_owner(path, u.uid, u.gid);
	snprintf(path, sizeof(path), "%s/old/slots/symlink", dir);
	test_priv_expect_owner(path, 0, 0); /* the link itself is left alone */
	test_priv_expect_owner(victim, 0, 0);

	/* The user's own spool is not walked: what is in it stays as it is. */
	snprintf(path, sizeof(path), "%s/old/slots/late", dir);
	test_priv_write(path);
	snprintf(path, sizeof(path), "%s/old", dir);
	cr_assert_eq(priv_prepare_dir(path, &u, &err), 0, "%s", err);
	snprintf(path, sizeof(path), "%s/old/slots/late", dir);
	test_priv_expect_owner(path, 0, 0);

	/* Not a directory. */
	cr_expect_eq(priv_prepare_dir(victim, &u, &err), -1);
	cr_expect_not_null(strstr(err, "not a directory"), "%s", err);
	free(err);

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	cr_expect_eq(system(path), 0);
}

Test(priv, drop_is_for_good)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;
	struct priv_user u;
	char *err = NULL;
	gid_t groups[8];

	if (geteuid() != 0)
		cr_skip_test("setuid needs root");
	cr_assert_eq(priv_resolve("nobody", NULL, &u, &err), 0);
	cr_assert_eq(priv_drop(&u, &err), 0, "%s", err);
	cr_assert_eq(getresuid(&r, &e, &s), 0);
	cr_assert_eq(getresgid(&rg, &eg, &sg), 0);
	cr_expect(r == u.uid && e == u.uid && s == u.uid);
	cr_expect(rg == u.gid && eg == u.gid && sg == u.gid);
	cr_expect_eq(setuid(0), -1, "no way back");
	cr_expect_leq(getgroups(8, groups), 1, "only nobody's own groups (initgroups)");
	cr_expect_eq(access("/etc/shadow", R_OK), -1, "root's files are closed now");
}

Test(priv, drop_caps)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	char *err = NULL;

	if (geteuid() != 0)
		cr_skip_test("a process without capabilities has none to drop");
	cr_assert_eq(priv_drop_caps(&err), 1, "%s", err);
	cr_assert_eq(syscall(SYS_capget, &hdr, data), 0);
	cr_expect(data[0].effective == 0 && data[0].permitted == 0 && data[1].permitted == 0);
	cr_expect_eq(priv_drop_caps(&err), 0, "nothing left the second time");
}
