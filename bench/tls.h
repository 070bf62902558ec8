/*
 * tls.h - the OpenSSL contexts petrel-bench uses: a client context for `send --starttls`
 * (no certificate verification unless asked: it is a load tool) and a server context for
 * `sink --tls` (a certificate from files, or a self-signed one made in memory at startup).
 *
 * The caller owns every returned object (SSL_CTX_free, SSL_free) until it hands an SSL to
 * stream_start_tls(), which then owns it (and frees it if it fails).
 */
#ifndef PETREL_BENCH_TLS_H
#define PETREL_BENCH_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/*
 * A client context. verify: check the peer's chain against cafile (or the system store
 * when cafile is NULL) and its name. Returns NULL with a message in err.
 */
SSL_CTX *bench_tls_client_ctx(bool verify, const char *cafile, char *err, size_t errlen);

/*
 * A client SSL for one connection. servername is sent as SNI unless it is an IP address,
 * and with verify it must match the certificate. Returns NULL on allocation failure.
 */
SSL *bench_tls_client_ssl(SSL_CTX *ctx, const char *servername, bool verify);

/*
 * A server context with cert_file/key_file (PEM), or with both NULL a fresh self-signed
 * P-256 certificate for CN "petrel-bench sink". Returns NULL with a message in err.
 */
SSL_CTX *bench_tls_server_ctx(const char *cert_file, const char *key_file, char *err,
                              size_t errlen);

/* Writes the first queued OpenSSL error (or fallback) into buf, clears the queue. */
const char *bench_tls_error_string(unsigned long e, const char *fallback, char *buf, size_t len);

#endif /* PETREL_BENCH_TLS_H */
