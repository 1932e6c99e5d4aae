/*
 * test_oci_config.c - errors about credential files never quote them.
 *
 * remotes.json holds passwords and an auth file holds base64 user:password:
 * a syntax error right after a secret, or an auth file that is not JSON,
 * must be reported by line and column only (jansson's own message quotes
 * the text "near" the error).  No registry is needed: oci_client_new()
 * reads the auth file before any request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/registry/oci.h"
#include "tests/check.h"

#define SECRET "S3cr3tPW"

static char tmp[] = "/tmp/llmfs-oci-config-XXXXXX";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

/* Fails when err holds any piece of the secret of 3 bytes or more. */
static void check_no_secret(const char *err, const char *secret)
{
	char piece[4] = "";
	size_t n = strlen(secret);

	for (size_t i = 0; i + 3 <= n; i++) {
		memcpy(piece, secret + i, 3);
		if (strstr(err, piece)) {
			fprintf(stderr, "error quotes the secret: %s\n", err);
			CHECK(!"error quotes the secret");
			return;
		}
	}
}

static void test_remotes_syntax(void)
{
	static const char *const texts[] = {
		/* an unterminated password string */
		"{\"remotes\": {\"lab\": {\"url\": \"https://x\",\n"
		" \"username\": \"u\", \"password\": \"" SECRET "}}}\n",
		/* a stray token right after the password */
		"{\"remotes\": {\"lab\": {\"url\": \"https://x\",\n"
		" \"username\": \"u\", \"password\": \"" SECRET "\" x}}}\n",
		/* a password that is not a string */
		"{\"remotes\": {\"lab\": {\"url\": \"https://x\",\n"
		" \"username\": \"u\", \"password\": " SECRET "}}}\n",
		/* a duplicate key whose name is a secret */
		"{\"remotes\": {\"" SECRET "\": {}, \"" SECRET "\": {}}}\n",
	};
	struct oci_remote *r = NULL;
	char path[256], err[1024];
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/remotes.json", tmp);
	for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
		write_file(path, texts[i]);
		err[0] = 0;
		CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
		check_no_secret(err, SECRET);
		/* Still says where: the file, a line and a column. */
		CHECK(strstr(err, "remotes.json") != NULL);
		CHECK(strstr(err, "line") != NULL);
		CHECK(strstr(err, "column") != NULL);
	}
}

static void test_auth_file_not_json(void)
{
	static const char *const texts[] = {
		/* a token file where an auth.json was expected */
		"\"" SECRET "\"\n",
		/* a quoted user:password line */
		"\"u:" SECRET "\" registry.example.com\n",
		/* cut inside the base64 */
		"{\"auths\": {\"h:1\": {\"auth\": \"" SECRET "\n",
	};
	struct oci_remote r = {
		.name = "lab", .url = "https://127.0.0.1:9", .connections = 1,
		.retries = 1, .stall_s = 1,
	};
	struct oci_client *c = NULL;
	char path[256], err[1024];

	snprintf(path, sizeof(path), "%s/auth.json", tmp);
	r.auth_file = path;
	for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
		write_file(path, texts[i]);
		err[0] = 0;
		CHECK_EQ(oci_client_new(&r, &c, err, sizeof(err)), -EINVAL);
		CHECK(c == NULL);
		oci_client_free(c);
		c = NULL;
		check_no_secret(err, SECRET);
		CHECK(strstr(err, "auth.json") != NULL);
		CHECK(strstr(err, "line") != NULL);
		CHECK(strstr(err, "column") != NULL);
	}
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_remotes_syntax);
	RUN(test_auth_file_not_json);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmp);
	return check_status();
}
