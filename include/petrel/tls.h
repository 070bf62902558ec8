/*
 * tls.h: OpenSSL 3 contexts for STARTTLS and implicit TLS (inbound) and for opportunistic or
 * required TLS to other servers (outbound). The bufferevent filters live in the session and
 * the client; this module makes and describes the SSL objects.
 *
 * Reload: a new tls_server replaces the old one for new connections; connections already
 * running keep theirs (every SSL holds a reference to its SSL_CTX), so nothing is dropped.
 */
#ifndef PETREL_TLS_H
#define PETREL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct tls_server;
struct tls_client;

/*
 * Load the certificate chain (PEM, leaf first) and key, check they match. min_version is
 * TLS1_2_VERSION or TLS1_3_VERSION; ciphers is an OpenSSL list for TLS <= 1.2 or NULL.
 * Returns NULL and *err (malloc'd, with OpenSSL's reason) on failure.
 */
struct tls_server *tls_server_new(const char *cert, const char *key, int min_version,
                                  const char *ciphers, char **err);
void tls_server_free(struct tls_server *t);

/* A new server-side SSL (caller owns it until it hands it to a bufferevent filter). */
SSL *tls_server_ssl(struct tls_server *t);

/* Outbound: verify against the system trust store, or ca_file (PEM) when given. */
struct tls_client *tls_client_new(const char *ca_file, char **err);
void tls_client_free(struct tls_client *t);

/* A new client-side SSL for `host`: SNI with a name; with verify, the certificate must match the
 * name, or for an address (bare, or "[192.0.2.1]", "[IPv6:2001:db8::1]") an IP SAN. Caller owns
 * it until it hands it to a bufferevent filter. NULL on failure (OpenSSL's error queue says why).
 */
SSL *tls_client_ssl(struct tls_client *t, const char *host, bool verify);

/* "TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256" into buf (for Received: and logs). */
void tls_describe(const SSL *ssl, char *buf, size_t size);

/* The last OpenSSL error as text (or "unknown"), for logs; clears the error queue. */
const char *tls_error(char *buf, size_t size);

#endif
