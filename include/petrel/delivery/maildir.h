/*
 * delivery/maildir.h: local delivery into a Maildir (tmp/ → new/, as the Maildir convention
 * requires), with the message unstuffed on the way (the spool keeps the dot-stuffed DATA form).
 *
 * Blocking file I/O: call it from a worker thread, never from the event loop. Thread-safe.
 */
#ifndef PETREL_DELIVERY_MAILDIR_H
#define PETREL_DELIVERY_MAILDIR_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Expand a route's maildir template for one recipient: "%u" → local part (lower-cased, and
 * refused if it contains '/', or is "." or ".." or empty), "%d" → domain (lower-cased), "%%" →
 * "%". Returns 0, or -1 if the result does not fit or the local part is unsafe.
 */
int maildir_expand(const char *tmpl, const char *local, size_t local_len, const char *domain,
                   char *out, size_t outsize);

/*
 * Details of maildir_expand() (additions to the contract above):
 * - the local part is also refused if it contains NUL or a control octet (< 0x20, 0x7f); the
 *   domain (NULL is taken as "") is refused if it is empty or contains '/' or a control octet;
 *   each is checked only if the template uses it ("/srv/shared" accepts any address);
 * - lower-casing is ASCII only (8-bit octets of an SMTPUTF8 address are copied as they are);
 * - the template is trusted configuration (it may contain '/', even ".."), but a path component
 *   of the result that is "." or ".." and holds a byte from %u or %d is refused (".%u" with the
 *   local part "." would otherwise climb a level);
 * - "%" followed by anything but 'u', 'd', '%' (or at the end) is an error, so a config check
 *   can expand with a sample address to validate a template;
 * - on -1, errno is ENAMETOOLONG (does not fit; out is then not usable) or EINVAL (unsafe).
 */

/*
 * Deliver: create dir/{tmp,new,cur} as needed (mode 0700), write the message read from src_fd
 * at [offset, offset+len) unstuffed ("..x" → ".x" at line starts) into tmp/<unique>, prefixed by
 * `prefix` (e.g. a Delivered-To: and Return-Path: header; may be NULL), fsync it, link/rename it
 * into new/<unique>, fsync new/. Returns 0, or -1 with a reason in err (and the errno-style
 * class in *temporary: 1 = try later (disk full, I/O error), 0 = permanent (not a directory,
 * permission denied)). Nothing is left in tmp/ on failure.
 */
int maildir_deliver(const char *dir, const char *prefix, int src_fd, off_t offset, size_t len,
                    int *temporary, char *err, size_t errsize);

/*
 * Details of maildir_deliver() (additions to the contract above):
 * - missing parents of dir are created too (mode 0700, like dir/ and its tmp/ new/ cur/); each
 *   directory created is made durable by an fsync of its parent;
 * - tmp/ and new/ may not be symbolic links (ENOTDIR: permanent); dir and its parents may;
 * - file names follow the Maildir convention: tmp/<sec>.M<usec>P<pid>Q<n>.<host> (n from a
 *   process-wide atomic counter; in host '/', ':', ',' and non-printable octets become \ooo),
 *   linked into new/ as the same name plus ",S=<size>" (the size of the file in octets, which
 *   Maildir++ quota code in Dovecot and Courier reads instead of calling stat());
 * - line endings: the spool holds CRLF, the Maildir file gets LF, as Dovecot and Courier (and
 *   the MUAs that read a Maildir directly) expect; a CR not followed by LF is kept as it is
 *   (it cannot occur: petrel refuses bare CR and bare LF in DATA and BDAT). The prefix gets the
 *   same CRLF -> LF conversion (callers may build it either way), but no unstuffing;
 * - unstuffing follows RFC 5321 4.5.2: a line that starts with '.' and has more on it loses
 *   that first '.'; a line that is a lone "." is kept;
 * - the source is read with pread() (src_fd's offset is not used nor changed) in chunks of
 *   MAILDIR_CHUNK_SIZE; a source shorter than offset+len is a temporary error;
 * - the file is linked into new/ (rename() when the file system has no hard links), new/ is
 *   fsync'd, then tmp/<name> is unlinked. If the fsync of new/ fails, the file in new/ is
 *   removed again before returning a temporary error (the queue retries; a crash in between
 *   can at worst leave a duplicate, never lose the message). Nothing partial is ever in new/;
 * - temporary/permanent follows maildir_error_is_temporary(); temporary and err may be NULL.
 */

#define MAILDIR_CHUNK_SIZE (64 * 1024)

/*
 * 1 if errno value err is worth a retry (ENOSPC, EDQUOT, EIO, EAGAIN, EINTR after retries,
 * EROFS, ENOMEM, EMFILE, EEXIST from a name clash, ... and anything unknown), 0 if retrying
 * cannot help (ENOTDIR, EACCES, EPERM, ENAMETOOLONG, ELOOP, EISDIR, EFBIG). Unknown errors are
 * temporary: a needless retry is cheaper than a wrong bounce, and the queue's lifetime bounds
 * the retries.
 */
int maildir_error_is_temporary(int err);

/*
 * Tests only: read the source in chunks of n octets instead of MAILDIR_CHUNK_SIZE (0 restores
 * the default). Process-wide (an atomic); never call it while deliveries run.
 */
void maildir_set_chunk_size(size_t n);

#endif
