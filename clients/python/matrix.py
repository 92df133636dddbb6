"""psycopg2 through pgcloak: one line per check, exit 1 when one fails.

Run by proxy/clients_test.go with Debian's /usr/bin/python3 and
python3-psycopg2, and MATRIX_HOST, MATRIX_PORT, MATRIX_DB, MATRIX_USER,
MATRIX_RESTRICTED_USER, MATRIX_TARGET (pgcloak | postgres) and MATRIX_SKIP
(groups or checks to skip).

psycopg2 sends no parameters: it renders them as SQL literals
('1969-07-20'::date, 1234.50, '…'::uuid), so every check here exercises
the proxy's literal path.
"""

import contextlib
import datetime
import io
import os
import sys
import traceback
import uuid
from decimal import Decimal

import psycopg2
import psycopg2.errors
import psycopg2.extras

ENV = os.environ
VIA_PGCLOAK = ENV["MATRIX_TARGET"] == "pgcloak"
SKIP = set(filter(None, ENV.get("MATRIX_SKIP", "").split(",")))
RESULTS = {"ok": 0, "FAIL": 0, "skip": 0}

BORN = datetime.date(1969, 7, 20)
KOLKATA = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
SEEN = datetime.datetime(2024, 3, 10, 12, 34, 56, 789000, tzinfo=KOLKATA)
REF = uuid.UUID("6f1c0a52-8d7e-4a3b-9c1d-2e3f4a5b6c7d")
NOTE = 'note héllo, "quoted"'
DOC = {"b": [True, None], "a": 1}

psycopg2.extras.register_uuid()


class CheckFailed(Exception):
    pass


@contextlib.contextmanager
def connect(user=None):
    """A connection committed at the end of the block (unless it raised) and closed."""
    conn = psycopg2.connect(host=ENV["MATRIX_HOST"], port=ENV["MATRIX_PORT"], dbname=ENV["MATRIX_DB"],
                            user=user or ENV["MATRIX_USER"], password="unused", sslmode="disable",
                            connect_timeout=10)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def eq(what, got, want):
    if got != want or type(got) is not type(want):
        raise CheckFailed(f"{what}: got {got!r} ({type(got).__name__}), want {want!r} ({type(want).__name__})")


def expect_state(what, state, fn):
    try:
        fn()
    except psycopg2.Error as e:
        if e.pgcode != state:
            raise CheckFailed(f"{what}: SQLSTATE {e.pgcode} ({str(e).strip()}), want {state}")
        return
    raise CheckFailed(f"{what}: no error, want SQLSTATE {state}")


def rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def one(conn, sql, args=None):
    rs = rows(conn, sql, args)
    if len(rs) != 1:
        raise CheckFailed(f"{sql}: {len(rs)} rows, want 1")
    return rs[0]


CHECKS = []


def check(group, pgcloak_only=False):
    def register(fn):
        CHECKS.append((group, fn.__name__.replace("_", "-"), fn, pgcloak_only))
        return fn
    return register


# ---- core: what every application does ----

INSERT_FULL = ("INSERT INTO people (name, ssn, note, born, score, amount, visits, active, ref, doc) "
               "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


@check("core")
def insert_params():
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute(INSERT_FULL, ("Ann", "mxssn-111-22-3333", NOTE, BORN, 98.6, Decimal("1234.50"), 42, True, REF,
                                      psycopg2.extras.Json(DOC)))
            eq("rows inserted", cur.rowcount, 1)


@check("core")
def read_typed():
    with connect() as conn:
        r = one(conn, "SELECT ssn, note, born, score, amount, visits, active, ref, doc FROM people WHERE name = %s", ("Ann",))
        eq("ssn", r[0], "mxssn-111-22-3333")
        eq("note", r[1], NOTE)
        eq("born", r[2], BORN)
        eq("score", r[3], 98.6)
        eq("amount", r[4], Decimal("1234.50"))
        eq("amount as text", str(r[4]), "1234.50")
        eq("visits", r[5], 42)
        eq("active", r[6], True)
        eq("ref", r[7], REF)
        eq("doc", r[8], DOC)


@check("core")
def result_types():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people LIMIT 1")
        got = [(d.name, d.type_code) for d in cur.description]
        want = [("ssn", 25), ("note", 25), ("born", 1082), ("seen_at", 1184), ("score", 701), ("amount", 1700),
                ("visits", 20), ("active", 16), ("ref", 2950), ("doc", 3802)]
        eq("column types", got, want)


@check("core")
def equality_param():
    with connect() as conn:
        eq("by ssn", rows(conn, "SELECT name FROM people WHERE ssn = %s", ("mxssn-111-22-3333",)), [("Ann",)])
        eq("no match", rows(conn, "SELECT name FROM people WHERE ssn = %s", ("mxssn-000-00-0000",)), [])
        eq("by visits", rows(conn, "SELECT name FROM people WHERE visits = %s", (42,)), [("Ann",)])
        eq("ssn IN tuple", rows(conn, "SELECT name FROM people WHERE ssn IN %s", (("mxssn-111-22-3333", "mxssn-nobody"),)), [("Ann",)])
        eq("ssn = ANY(list)", rows(conn, "SELECT name FROM people WHERE ssn = ANY(%s)", (["mxssn-111-22-3333", "mxssn-nobody"],)),
           [("Ann",)])


@check("core")
def nulls():
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute(INSERT_FULL, ("Nil",) + (None,) * 9)
        r = one(conn, "SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people WHERE name = %s",
                ("Nil",))
        eq("all NULL", r, (None,) * 10)
        eq("IS NULL", rows(conn, "SELECT name FROM people WHERE note IS NULL AND ssn IS NULL"), [("Nil",)])
        eq("= NULL matches nothing", rows(conn, "SELECT name FROM people WHERE ssn = %s", (None,)), [])


@check("core")
def batch():
    data = [(f"b{i}", f"mxssn-b-{i}", f"note batch {i}", BORN + datetime.timedelta(days=i), Decimal(f"{i}.25"), 1000 + i)
            for i in range(1, 6)]
    with connect() as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO people (name, ssn, note, born, amount, visits) VALUES (%s, %s, %s, %s, %s, %s)",
                            data)
        got = rows(conn, "SELECT name, ssn, note, born, amount, visits FROM people WHERE ssn = ANY(%s) ORDER BY name",
                   ([d[1] for d in data],))
        eq("rows read back", got, data)


@check("core")
def execute_values():
    data = [(f"v{i}", f"mxssn-v-{i}", f"note values {i}", Decimal(f"-{i}.5")) for i in range(1, 6)]
    with connect() as conn:
        with conn.cursor() as cur:
            psycopg2.extras.execute_values(cur, "INSERT INTO people (name, ssn, note, amount) VALUES %s", data, page_size=3)
        got = rows(conn, "SELECT name, ssn, note, amount FROM people WHERE ssn = ANY(%s) ORDER BY name",
                   ([d[1] for d in data],))
        eq("rows read back", got, data)


@check("core")
def prepared_statements():
    # psycopg2 prepares nothing on the server itself; SQL PREPARE/EXECUTE,
    # past PostgreSQL's own switch to a generic plan after 5 executions.
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute("PREPARE ins(text, text, date, numeric) AS INSERT INTO people (name, ssn, born, amount) VALUES ($1, $2, $3, $4)")
            for i in range(1, 9):
                cur.execute("EXECUTE ins(%s, %s, %s, %s)", (f"p{i}", f"mxssn-p-{i}", BORN.replace(year=1969 + i), Decimal(f"{i}.5")))
            cur.execute("PREPARE sel(text) AS SELECT name, born, amount FROM people WHERE ssn = $1")
            for rnd in range(2):
                for i in range(1, 9):
                    cur.execute("EXECUTE sel(%s)", (f"mxssn-p-{i}",))
                    eq(f"execution {rnd * 8 + i}", cur.fetchall(), [(f"p{i}", BORN.replace(year=1969 + i), Decimal(f"{i}.5"))])
            cur.execute("DEALLOCATE ALL")


COPY_IN = ('Cora,mxssn-copy-1,note from copy,1970-01-02,12.50\n'
           '"Dee, Jr.",mxssn-copy-2,"note with ""quotes"", commas",2000-02-29,-0.001\n'
           'Ed,mxssn-copy-3,,,\n')


@check("core")
def copy():
    with connect() as conn:
        with conn.cursor() as cur:
            cur.copy_expert("COPY imports (name, ssn, note, born, amount) FROM STDIN (FORMAT csv)", io.StringIO(COPY_IN))
            eq("rows copied in", cur.rowcount, 3)
            out = io.StringIO()
            cur.copy_expert("COPY imports (name, ssn, note, born, amount) TO STDOUT (FORMAT csv)", out)
            eq("copied out", out.getvalue(), COPY_IN)
        eq("row by ssn", one(conn, "SELECT name, note, born, amount FROM imports WHERE ssn = %s", ("mxssn-copy-2",)),
           ("Dee, Jr.", 'note with "quotes", commas', datetime.date(2000, 2, 29), Decimal("-0.001")))
        eq("NULLs", one(conn, "SELECT name, note, born, amount FROM imports WHERE ssn = %s", ("mxssn-copy-3",)),
           ("Ed", None, None, None))


@check("core", pgcloak_only=True)
def refused_then_normal():
    with connect() as conn:
        # psycopg2 opens a transaction: the refusal aborts it, rollback ends it.
        expect_state("ORDER BY a randomized column", "0A000", lambda: rows(conn, "SELECT name FROM people ORDER BY note"))
        expect_state("the transaction is aborted", "25P02", lambda: rows(conn, "SELECT 1"))
        conn.rollback()
        eq("after rollback", rows(conn, "SELECT name FROM people WHERE ssn = %s", ("mxssn-111-22-3333",)), [("Ann",)])
        expect_state("LIKE on an encrypted column", "0A000", lambda: rows(conn, "SELECT name FROM people WHERE note LIKE %s", ("note%",)))
        conn.rollback()
        conn.autocommit = True
        expect_state("autocommit: upper() of an encrypted column", "0A000", lambda: rows(conn, "SELECT upper(note) FROM people"))
        eq("then a normal insert", rows(conn, "INSERT INTO people (name, ssn) VALUES (%s, %s) RETURNING name",
                                        ("AfterRefusal", "mxssn-after-refusal")), [("AfterRefusal",)])


@check("core", pgcloak_only=True)
def restricted_role():
    with connect(ENV["MATRIX_RESTRICTED_USER"]) as conn:
        eq("billing reads ssn, the rest is NULL",
           one(conn, "SELECT name, ssn, note, born, amount, visits, doc FROM people WHERE ssn = %s", ("mxssn-111-22-3333",)),
           ("Ann", "mxssn-111-22-3333", None, None, None, None, None))
        expect_state("billing may not write note", "42501",
                     lambda: rows(conn, "UPDATE people SET note = %s WHERE ssn = %s RETURNING id", ("note by billing", "mxssn-111-22-3333")))
        conn.rollback()
        eq("then a normal query", rows(conn, "SELECT name FROM people WHERE ssn = %s", ("mxssn-111-22-3333",)), [("Ann",)])
    with connect() as conn:
        eq("doctor still reads the note", one(conn, "SELECT note FROM people WHERE ssn = %s", ("mxssn-111-22-3333",)), (NOTE,))


# ---- regressions: driver findings of issue 8 ----

@check("regressions")
def tz_aware_timestamptz():
    # psycopg2 renders it as '2024-03-10T12:34:56.789000+05:30'::timestamptz.
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO people (name, ssn, seen_at) VALUES (%s, %s, %s)", ("tz", "mxssn-tz", SEEN))
        got = one(conn, "SELECT seen_at FROM people WHERE ssn = %s", ("mxssn-tz",))[0]
        eq("seen_at is aware", got.tzinfo is not None, True)
        eq("seen_at (same instant)", got, SEEN)
        eq("seen_at in UTC", got.astimezone(datetime.timezone.utc).isoformat(), "2024-03-10T07:04:56.789000+00:00")


# ---- conversions: a literal of another type than the column's ----

def conversion(column, value, want):
    with connect() as conn:
        rid = one(conn, f"INSERT INTO people (name, {column}) VALUES ('conversion', %s) RETURNING id", (value,))[0]
        # (A cast of an encrypted column is refused: read the typed value
        # and render it as PostgreSQL's text output would.)
        v = one(conn, f"SELECT {column} FROM people WHERE id = %s", (rid,))[0]
        eq(f"{column} as text", repr(v).removesuffix(".0") if isinstance(v, float) else str(v), want)


@check("conversions")
def int_into_float8():
    conversion("score", 42, "42")


@check("conversions")
def decimal_into_float8():
    conversion("score", Decimal("2.25"), "2.25")


@check("conversions")
def float_into_numeric():
    conversion("amount", 2.5, "2.5")


@check("conversions")
def int_into_numeric():
    conversion("amount", 7, "7")


@check("conversions")
def naive_datetime_into_timestamptz():
    # A naive timestamp is read in the session's TimeZone.
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'Asia/Kolkata'")
            cur.execute("INSERT INTO people (name, ssn, seen_at) VALUES (%s, %s, %s)",
                        ("naive", "mxssn-naive", datetime.datetime(2024, 3, 10, 12, 34, 56, 789000)))
        eq("seen_at", one(conn, "SELECT seen_at FROM people WHERE ssn = %s", ("mxssn-naive",))[0], SEEN)


@check("conversions")
def date_into_timestamptz():
    # date → timestamptz: midnight in the session's TimeZone.
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'Asia/Kolkata'")
            cur.execute("INSERT INTO people (name, ssn, seen_at) VALUES (%s, %s, %s)", ("dt", "mxssn-date-tstz", BORN))
        eq("seen_at", one(conn, "SELECT seen_at FROM people WHERE ssn = %s", ("mxssn-date-tstz",))[0],
           datetime.datetime(1969, 7, 20, tzinfo=KOLKATA))


def main():
    for group, name, fn, pgcloak_only in CHECKS:
        full = f"psycopg2/{group}/{name}"
        if group in SKIP or name in SKIP or full in SKIP:
            print(f"skip {full}")
            RESULTS["skip"] += 1
            continue
        if pgcloak_only and not VIA_PGCLOAK:
            print(f"skip {full} (pgcloak only)")
            RESULTS["skip"] += 1
            continue
        try:
            fn()
        except CheckFailed as e:
            print(f"FAIL {full}: {e}")
            RESULTS["FAIL"] += 1
        except psycopg2.Error as e:
            print(f"FAIL {full}: SQLSTATE {e.pgcode}: {str(e).strip()}")
            RESULTS["FAIL"] += 1
        except Exception:
            print(f"FAIL {full}: {traceback.format_exc().strip()}")
            RESULTS["FAIL"] += 1
        else:
            print(f"ok   {full}")
            RESULTS["ok"] += 1
        sys.stdout.flush()
    print(f"psycopg2: {RESULTS['ok']} checks ok, {RESULTS['FAIL']} FAILED, {RESULTS['skip']} skipped")
    return 1 if RESULTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
