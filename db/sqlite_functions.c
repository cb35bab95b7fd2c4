/*
 * SQL functions that SQLite lacks and compiled reads need on every row (db/json_sql.py):
 *
 *   quill_base64(text)     base64 of the text's UTF-8 bytes, padded (a global ID: 'Post:42')
 *   quill_base64url(text)  the URL-safe alphabet, unpadded (a cursor)
 *   quill_timestamp(text)  a stored UTC timestamp as the API prints it (db/timestamps.py)
 *
 * Spelled out in SQL they cost about 0.5 µs a row, half of a 100-row page's statement; here
 * they cost one call each. db/sqlite_functions.py registers them with SQLite for every
 * connection the process opens; without this library the SQL spellings in db/json_sql.py are
 * used instead, and tests/test_json_sql.py checks that both print the same.
 *
 * Each function returns NULL for NULL, like SQLite's own.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <string.h>

#ifndef SQLITE_INNOCUOUS
#define SQLITE_INNOCUOUS 0 /* before SQLite 3.31 */
#endif

static const char STANDARD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char URL_SAFE[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void encode(sqlite3_context *context, sqlite3_value *value, const char *alphabet, int padded) {
  if (sqlite3_value_type(value) == SQLITE_NULL) {
    sqlite3_result_null(context);
    return;
  }
  const unsigned char *in = sqlite3_value_text(value);
  sqlite3_int64 n = sqlite3_value_bytes(value);
  char *out = sqlite3_malloc64((n + 2) / 3 * 4 + 1);
  if (in == 0 || out == 0) {
    sqlite3_free(out);
    sqlite3_result_error_nomem(context);
    return;
  }
  sqlite3_int64 i = 0, o = 0;
  for (; i + 2 < n; i += 3) {
    unsigned bits = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[o++] = alphabet[bits >> 18];
    out[o++] = alphabet[bits >> 12 & 63];
    out[o++] = alphabet[bits >> 6 & 63];
    out[o++] = alphabet[bits & 63];
  }
  if (i < n) { /* one or two bytes left: two or three characters, then padding */
    unsigned bits = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
    out[o++] = alphabet[bits >> 18];
    out[o++] = alphabet[bits >> 12 & 63];
    if (i + 1 < n) out[o++] = alphabet[bits >> 6 & 63];
    if (padded) {
      if (i + 1 == n) out[o++] = '=';
      out[o++] = '=';
    }
  }
  sqlite3_result_text64(context, out, o, sqlite3_free, SQLITE_UTF8);
}

static void base64(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  encode(context, argv[0], STANDARD, 1);
}

static void base64url(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  encode(context, argv[0], URL_SAFE, 0);
}

/*
 * SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC; a hand-written row may lack the fraction.
 * The API prints 'YYYY-MM-DDTHH:MM:SS.ff+00:00': the fraction without its trailing zeros, and
 * without its dot when nothing is left. Exactly SqliteJson.datetime's SQL, for any text:
 * past 19 characters trailing zeros then dots go, every space becomes a T, '+00:00' follows.
 */
static void timestamp(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
    sqlite3_result_null(context);
    return;
  }
  const unsigned char *in = sqlite3_value_text(argv[0]);
  sqlite3_int64 n = sqlite3_value_bytes(argv[0]);
  char *out = sqlite3_malloc64(n + 7);
  if (in == 0 || out == 0) {
    sqlite3_free(out);
    sqlite3_result_error_nomem(context);
    return;
  }
  sqlite3_int64 characters = 0; /* SQL's length() counts characters, not bytes */
  for (sqlite3_int64 i = 0; i < n; i++) characters += (in[i] & 0xC0) != 0x80;
  if (characters > 19) {
    while (n > 0 && in[n - 1] == '0') n--;
    while (n > 0 && in[n - 1] == '.') n--;
  }
  for (sqlite3_int64 i = 0; i < n; i++) out[i] = in[i] == ' ' ? 'T' : (char)in[i];
  memcpy(out + n, "+00:00", 6);
  sqlite3_result_text64(context, out, n + 6, sqlite3_free, SQLITE_UTF8);
}

/*
 * The entry point SQLite calls for each new connection (sqlite3_auto_extension). An error here
 * would fail the connection's open, so a library built without extension support (no API
 * routines to call) gets no functions instead: db/sqlite_functions.py then finds them missing.
 */
int quill_sqlite_functions_init(sqlite3 *db, char **error, const sqlite3_api_routines *api) {
  (void)error;
  if (api == 0) return SQLITE_OK;
  SQLITE_EXTENSION_INIT2(api);
  int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  int rc = sqlite3_create_function(db, "quill_base64", 1, flags, 0, base64, 0, 0);
  if (rc == SQLITE_OK) rc = sqlite3_create_function(db, "quill_base64url", 1, flags, 0, base64url, 0, 0);
  if (rc == SQLITE_OK) rc = sqlite3_create_function(db, "quill_timestamp", 1, flags, 0, timestamp, 0, 0);
  return rc;
}
