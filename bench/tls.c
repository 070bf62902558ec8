/*
 * tls.c - OpenSSL contexts for petrel-bench (see tls.h). No I/O here: the handshake runs
 * inside libevent's OpenSSL filter in send_session.c and sink.c.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

const char *
bench_tls_error_string(unsigned long e, const char *fallback, char *buf, size_t len)
{
	if (e == 0)
		e = ERR_peek_last_error();
	if (e != 0)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", fallback);
	ERR_clear_error();
	return buf;
}

SSL_CTX *
bench_tls_client_ctx(bool verify, const char *cafile, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	/* Every connection pays a full handshake, like a fresh client would. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (verify) {
		int ok = cafile ? SSL_CTX_load_verify_locations(ctx, cafile, NULL)
		                : SSL_CTX_set_default_verify_paths(ctx);

		if (ok != 1)
			goto fail;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
fail:
	bench_tls_error_string(0, "cannot create the TLS client context", err, errlen);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL *
bench_tls_client_ssl(SSL_CTX *ctx, const char *servername, bool verify)
{
	unsigned char addr[sizeof(struct in6_addr)];
	bool is_ip;
	SSL *ssl;

	ssl = SSL_new(ctx);
	if (ssl == NULL)
		return NULL;
	is_ip = inet_pton(AF_INET, servername, addr) == 1 ||
	        inet_pton(AF_INET6, servername, addr) == 1;
	if (!is_ip && SSL_set_tlsext_host_name(ssl, servername) != 1)
		goto fail;
	if (verify) {
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), servername) != 1
		          : SSL_set1_host(ssl, servername) != 1)
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

/* Makes a self-signed certificate for pkey, valid from an hour ago for a year. */
static X509 *
bench_tls_self_signed(EVP_PKEY *pkey)
{
	X509_NAME *name;
	X509 *x;
	long serial = 1;

	x = X509_new();
	if (x == NULL)
		return NULL;
	(void)RAND_bytes((unsigned char *)&serial, sizeof(serial));
	if (X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), serial & 0x7fffffff) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) == NULL ||
	    X509_set_pubkey(x, pkey) != 1)
		goto fail;
	name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                               (const unsigned char *)"petrel-bench sink", -1, -1,
	                               0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_sign(x, pkey, EVP_sha256()) == 0)
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

SSL_CTX *
bench_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	X509 *cert = NULL;
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	if (cert_file != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
			goto fail;
	} else {
		pkey = EVP_EC_gen("P-256");
		if (pkey == NULL)
			goto fail;
		cert = bench_tls_self_signed(pkey);
		if (cert == NULL || SSL_CTX_use_certificate(ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, pkey) != 1)
			goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return ctx;
fail:
	bench_tls_error_string(0, "cannot create the TLS server context", err, errlen);
	X509_free(cert);
	EVP_PKEY_free(pkey);
	SSL_CTX_free(ctx);
	return NULL;
}
