/*
 * tls.c: SSL_CTX set-up for petrel (see tls.h).
 *
 * Server defaults: TLS 1.2 at least, OpenSSL's default cipher suites (TLS 1.3) and list (1.2),
 * no compression, no renegotiation, server cipher preference, and SSL_MODE_RELEASE_BUFFERS so
 * an idle TLS session does not keep its 2 x 16 KiB record buffers. Client: the system trust
 * store (or a route's ca_file), SNI always, host-name verification when verify is asked for.
 */
#include "petrel/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

struct tls_server {
	SSL_CTX *ctx;
};

struct tls_client {
	SSL_CTX *ctx;
};

const char *
tls_error(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, size, "unknown");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

static void
tls_set_err(char **err, const char *what, const char *path)
{
	char ebuf[256];

	tls_error(ebuf, sizeof(ebuf));
	if (asprintf(err, "tls: %s %s: %s", what, path ? path : "", ebuf) == -1)
		*err = NULL;
}

struct tls_server *
tls_server_new(const char *cert, const char *key, int min_version, const char *ciphers, char **err)
{
	struct tls_server *t;

	*err = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_set_err(err, "cannot create a context", NULL);
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, min_version ? min_version : TLS1_2_VERSION);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	if (ciphers && SSL_CTX_set_cipher_list(t->ctx, ciphers) != 1) {
		tls_set_err(err, "bad cipher list", ciphers);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
		tls_set_err(err, "cannot load certificate", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
		tls_set_err(err, "cannot load key", key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1) {
		tls_set_err(err, "key does not match certificate", key);
		goto fail;
	}
	return t;
fail:
	tls_server_free(t);
	return NULL;
}

void
tls_server_free(struct tls_server *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx); /* running sessions keep their own reference */
	free(t);
}

SSL *
tls_server_ssl(struct tls_server *t)
{
	return SSL_new(t->ctx);
}

struct tls_client *
tls_client_new(const char *ca_file, char **err)
{
	struct tls_client *t;

	*err = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_set_err(err, "cannot create a client context", NULL);
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	if (ca_file ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1
	            : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		tls_set_err(err, "cannot load trust anchors", ca_file ? ca_file : "(system)");
		goto fail;
	}
	return t;
fail:
	tls_client_free(t);
	return NULL;
}

void
tls_client_free(struct tls_client *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

SSL *
tls_client_ssl(struct tls_client *t, const char *host, bool verify)
{
	SSL *ssl = SSL_new(t->ctx);

	if (ssl == NULL)
		return NULL;
	if (host && host[0] && host[0] != '[')
		SSL_set_tlsext_host_name(ssl, host);
	if (verify) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		if (SSL_set1_host(ssl, host) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	}
	return ssl;
}

void
tls_describe(const SSL *ssl, char *buf, size_t size)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int bits = 0;

	if (c)
		SSL_CIPHER_get_bits(c, &bits);
	snprintf(buf, size, "%s cipher=%s bits=%d", SSL_get_version(ssl),
	         c ? SSL_CIPHER_get_name(c) : "none", bits);
}
