/*
 * tls.c: SSL_CTX set-up for petrel (see tls.h).
 *
 * Server defaults: TLS 1.2 at least, OpenSSL's default cipher suites (TLS 1.3) and list (1.2),
 * no compression, no renegotiation, server cipher preference, and SSL_MODE_RELEASE_BUFFERS so
 * an idle TLS session does not keep its 2 x 16 KiB record buffers. Client: the system trust
 * store (or a route's ca_file), SNI always, host-name verification when verify is asked for.
 */
#include "petrel/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	char ip[INET6_ADDRSTRLEN + 8];
	unsigned char bin[sizeof(struct in6_addr)];
	size_t len = host ? strlen(host) : 0;
	bool literal = false;
	SSL *ssl;

	/* An address, bare or as an RFC 5321 literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), is
	 * matched against the certificate's IP SANs, and gets no SNI (RFC 6066 §3). */
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
		snprintf(ip, sizeof(ip), "%.*s", (int)(len - 2), host + 1);
	else
		snprintf(ip, sizeof(ip), "%s", host ? host : "");
	if (strncasecmp(ip, "IPv6:", 5) == 0)
		memmove(ip, ip + 5, strlen(ip + 5) + 1);
	literal = inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;

	if ((ssl = SSL_new(t->ctx)) == NULL)
		return NULL;
	if (!literal && len > 0 && SSL_set_tlsext_host_name(ssl, host) != 1)
		goto fail;
	if (!verify) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		return ssl;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	if (literal) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) != 1)
			goto fail;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (len == 0 || SSL_set1_host(ssl, host) != 1)
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
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
