// pgjdbc through pgcloak: one line per check, exit 1 when one fails.
// Run by proxy/clients_test.go as a single-file source program:
//   java -Duser.timezone=UTC -cp /usr/share/java/postgresql.jar Matrix.java
// with MATRIX_HOST, MATRIX_PORT, MATRIX_DB, MATRIX_USER, MATRIX_RESTRICTED_USER,
// MATRIX_TARGET (pgcloak | postgres) and MATRIX_SKIP (groups or checks to skip).

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.*;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.util.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PGobject;

public class Matrix {
    static final String HOST = env("MATRIX_HOST"), PORT = env("MATRIX_PORT"), DB = env("MATRIX_DB");
    static final String USER = env("MATRIX_USER"), RESTRICTED = env("MATRIX_RESTRICTED_USER");
    static final boolean VIA_PGCLOAK = env("MATRIX_TARGET").equals("pgcloak");
    static final Set<String> SKIP = new HashSet<>(Arrays.asList(System.getenv().getOrDefault("MATRIX_SKIP", "").split(",")));
    static int passed, failed, skipped;

    static final LocalDate BORN = LocalDate.of(1969, 7, 20);
    static final OffsetDateTime SEEN = OffsetDateTime.parse("2024-03-10T12:34:56.789+05:30");
    static final UUID REF = UUID.fromString("6f1c0a52-8d7e-4a3b-9c1d-2e3f4a5b6c7d");

    interface Body { void run() throws Exception; }

    public static void main(String[] args) throws Exception {
        // core: what every application does.
        check("core", "insert-params", Matrix::insertParams);
        check("core", "read-typed", Matrix::readTyped);
        check("core", "result-types", Matrix::resultTypes);
        check("core", "equality-param", Matrix::equalityParam);
        check("core", "any-array-param", Matrix::anyArrayParam);
        check("core", "nulls", Matrix::nulls);
        check("core", "batch", () -> batch(false));
        check("core", "batch-rewritten", () -> batch(true));
        check("core", "prepare-threshold", Matrix::prepareThreshold);
        check("core", "copy", Matrix::copy);
        pgcloakOnly("core", "refused-then-normal", Matrix::refusedThenNormal);
        pgcloakOnly("core", "refused-in-transaction", Matrix::refusedInTransaction);
        pgcloakOnly("core", "restricted-role", Matrix::restrictedRole);
        // regressions: driver findings of issue 8.
        check("regressions", "batch-two-strings", () -> batchTwoStrings(false));
        check("regressions", "batch-two-strings-rewritten", () -> batchTwoStrings(true));
        check("regressions", "setDate", Matrix::setDate);
        check("regressions", "setDate-calendar", Matrix::setDateCalendar);
        // conversions: a parameter declared as another type than the
        // column's, which PostgreSQL converts as in an assignment.
        check("conversions", "setLong-float8", () -> conversion("score", ps -> ps.setLong(1, 42L), "42"));
        check("conversions", "setInt-numeric", () -> conversion("amount", ps -> ps.setInt(1, 7), "7"));
        check("conversions", "setInt-int8", () -> conversion("visits", ps -> ps.setInt(1, 7), "7"));
        check("conversions", "setFloat-float8", () -> conversion("score", ps -> ps.setFloat(1, 1.5f), "1.5"));
        check("conversions", "setDouble-numeric", () -> conversion("amount", ps -> ps.setDouble(1, 2.5), "2.5"));
        check("conversions", "setBigDecimal-float8", () -> conversion("score", ps -> ps.setBigDecimal(1, new BigDecimal("2.25")), "2.25"));
        check("conversions", "setInt-equality-int8", Matrix::intEqualityInt8);
        check("conversions", "setLong-numeric", () -> conversion("amount", ps -> ps.setLong(1, 42L), "42"));
        check("conversions", "setDouble-int8", () -> conversion("visits", ps -> ps.setDouble(1, 2.5), "2")); // rint: half to even
        check("conversions", "setBigDecimal-int8", () -> conversion("visits", ps -> ps.setBigDecimal(1, new BigDecimal("7.5")), "8")); // half away from zero
        check("conversions", "setTimestamp-date", () -> conversion("born", ps -> ps.setTimestamp(1, Timestamp.from(SEEN.toInstant())), "2024-03-10"));
        check("conversions", "setObject-LocalDateTime-timestamptz", () -> conversion("seen_at",
            ps -> ps.setObject(1, java.time.LocalDateTime.of(2024, 3, 10, 12, 34, 56, 789_000_000)), "2024-03-10 12:34:56.789+00"));
        System.out.printf("jdbc: %d checks ok, %d FAILED, %d skipped%n", passed, failed, skipped);
        System.exit(failed == 0 ? 0 : 1);
    }

    // ---- checks ----

    static void insertParams() throws Exception {
        try (Connection c = connect(USER)) {
            insertFull(c, "Ann", "mxssn-111-22-3333");
        }
    }

    static void insertFull(Connection c, String name, String ssn) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "INSERT INTO people (name, ssn, note, born, seen_at, score, amount, visits, active, ref, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
            ps.setString(1, name);
            ps.setString(2, ssn);
            ps.setString(3, "note héllo, \"quoted\"");
            ps.setObject(4, BORN);
            ps.setObject(5, SEEN);
            ps.setDouble(6, 98.6);
            ps.setBigDecimal(7, new BigDecimal("1234.50"));
            ps.setLong(8, 42L);
            ps.setBoolean(9, true);
            ps.setObject(10, REF);
            PGobject doc = new PGobject();
            doc.setType("jsonb");
            doc.setValue("{\"b\": [true, null], \"a\": 1}");
            ps.setObject(11, doc);
            eq("rows inserted", ps.executeUpdate(), 1);
        }
    }

    static void readTyped() throws Exception {
        try (Connection c = connect(USER);
             PreparedStatement ps = c.prepareStatement(
                 "SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people WHERE name = ?")) {
            ps.setString(1, "Ann");
            try (ResultSet rs = ps.executeQuery()) {
                eq("a row", rs.next(), true);
                eq("ssn", rs.getString(1), "mxssn-111-22-3333");
                eq("note", rs.getString(2), "note héllo, \"quoted\"");
                eq("born", rs.getObject(3, LocalDate.class), BORN);
                eq("born getDate", rs.getDate(3).toString(), "1969-07-20");
                eq("seen_at instant", rs.getObject(4, OffsetDateTime.class).toInstant(), SEEN.toInstant());
                eq("score", rs.getDouble(5), 98.6);
                eq("amount", rs.getBigDecimal(6), new BigDecimal("1234.50"));
                eq("visits", rs.getLong(7), 42L);
                eq("active", rs.getBoolean(8), true);
                eq("ref", rs.getObject(9), REF);
                eq("doc", rs.getString(10), "{\"a\": 1, \"b\": [true, null]}");
                eq("one row", rs.next(), false);
            }
        }
    }

    static void resultTypes() throws Exception {
        try (Connection c = connect(USER); Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people LIMIT 1")) {
            ResultSetMetaData md = rs.getMetaData();
            String[] want = {"text", "text", "date", "timestamptz", "float8", "numeric", "int8", "bool", "uuid", "jsonb"};
            for (int i = 0; i < want.length; i++) {
                eq("type of " + md.getColumnName(i + 1), md.getColumnTypeName(i + 1), want[i]);
            }
            eq("born is java.sql.Date", md.getColumnClassName(3), "java.sql.Date");
        }
    }

    static void equalityParam() throws Exception {
        try (Connection c = connect(USER)) {
            eq("by ssn", names(c, "SELECT name FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-111-22-3333")), "Ann");
            eq("no match", names(c, "SELECT name FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-000-00-0000")), "");
            eq("by visits (setLong)", names(c, "SELECT name FROM people WHERE visits = ?", ps -> ps.setLong(1, 42L)), "Ann");
            eq("ssn IN", names(c, "SELECT name FROM people WHERE ssn IN (?, ?)", ps -> {
                ps.setString(1, "mxssn-111-22-3333");
                ps.setString(2, "mxssn-nobody");
            }), "Ann");
        }
    }

    static void nulls() throws Exception {
        try (Connection c = connect(USER)) {
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO people (name, ssn, note, born, seen_at, score, amount, visits, active, ref, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                ps.setString(1, "Nil");
                ps.setNull(2, Types.VARCHAR);
                ps.setString(3, null);
                ps.setNull(4, Types.DATE);
                ps.setNull(5, Types.TIMESTAMP_WITH_TIMEZONE);
                ps.setNull(6, Types.DOUBLE);
                ps.setBigDecimal(7, null);
                ps.setNull(8, Types.BIGINT);
                ps.setNull(9, Types.BOOLEAN);
                ps.setObject(10, null);
                ps.setNull(11, Types.OTHER);
                eq("rows inserted", ps.executeUpdate(), 1);
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT ssn, note, born, seen_at, score, amount, visits, active, ref, doc FROM people WHERE name = ?")) {
                ps.setString(1, "Nil");
                try (ResultSet rs = ps.executeQuery()) {
                    eq("a row", rs.next(), true);
                    for (int i = 1; i <= 10; i++) {
                        eq("column " + i + " is NULL", rs.getObject(i), null);
                    }
                }
            }
            eq("IS NULL", names(c, "SELECT name FROM people WHERE note IS NULL AND ssn IS NULL", ps -> {}), "Nil");
            eq("= NULL parameter matches nothing", names(c, "SELECT name FROM people WHERE ssn = ?", ps -> ps.setNull(1, Types.VARCHAR)), "");
        }
    }

    // executeBatch, plain or rewritten into one multi-row INSERT by the driver.
    static void batch(boolean rewrite) throws Exception {
        String tag = rewrite ? "rw" : "b";
        try (Connection c = connect(USER, "reWriteBatchedInserts", String.valueOf(rewrite))) {
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO people (name, ssn, note, born, amount, visits) VALUES (?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 5; i++) {
                    ps.setString(1, tag + i);
                    ps.setString(2, "mxssn-" + tag + "-" + i);
                    ps.setString(3, "note batch " + i);
                    ps.setObject(4, BORN.plusDays(i));
                    ps.setBigDecimal(5, new BigDecimal(i + ".25"));
                    ps.setLong(6, 1000 + i);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                int total = 0;
                for (int n : counts) total += n == Statement.SUCCESS_NO_INFO ? 1 : n;
                eq("rows inserted", total, 5);
            }
            for (int i = 1; i <= 5; i++) {
                final int n = i;
                eq("row " + i, row(c, "SELECT name, note, born, amount, visits FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-" + tag + "-" + n)),
                    tag + i + "|note batch " + i + "|" + BORN.plusDays(i) + "|" + i + ".25|" + (1000 + i));
            }
        }
    }

    // Past prepareThreshold (5) pgjdbc uses a named server statement and
    // binary results: the values must stay right on every execution.
    static void prepareThreshold() throws Exception {
        try (Connection c = connect(USER, "prepareThreshold", "5")) {
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO people (name, ssn, born, amount, visits, score, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 8; i++) {
                    ins.setString(1, "p" + i);
                    ins.setString(2, "mxssn-p-" + i);
                    ins.setObject(3, BORN.plusYears(i));
                    ins.setBigDecimal(4, new BigDecimal("-" + i + ".5"));
                    ins.setLong(5, 2000 + i);
                    ins.setDouble(6, i + 0.125);
                    ins.setObject(7, SEEN.plusHours(i));
                    eq("insert " + i, ins.executeUpdate(), 1);
                }
            }
            try (PreparedStatement sel = c.prepareStatement("SELECT name, born, amount, visits, score, seen_at FROM people WHERE ssn = ?")) {
                for (int round = 0; round < 2; round++) {
                    for (int i = 1; i <= 8; i++) {
                        sel.setString(1, "mxssn-p-" + i);
                        try (ResultSet rs = sel.executeQuery()) {
                            String at = "execution " + (round * 8 + i) + ": ";
                            eq(at + "a row", rs.next(), true);
                            eq(at + "name", rs.getString(1), "p" + i);
                            eq(at + "born", rs.getObject(2, LocalDate.class), BORN.plusYears(i));
                            eq(at + "amount", rs.getBigDecimal(3), new BigDecimal("-" + i + ".5"));
                            eq(at + "visits", rs.getLong(4), 2000L + i);
                            eq(at + "score", rs.getDouble(5), i + 0.125);
                            eq(at + "seen_at", rs.getObject(6, OffsetDateTime.class).toInstant(), SEEN.plusHours(i).toInstant());
                        }
                    }
                }
            }
        }
    }

    static void copy() throws Exception {
        String in = "Cora,mxssn-copy-1,note from copy,1970-01-02,12.50\n"
            + "\"Dee, Jr.\",mxssn-copy-2,\"note with \"\"quotes\"\", commas\",2000-02-29,-0.001\n"
            + "Ed,mxssn-copy-3,,,\n";
        try (Connection c = connect(USER)) {
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            long n = cm.copyIn("COPY imports (name, ssn, note, born, amount) FROM STDIN (FORMAT csv)", new StringReader(in));
            eq("rows copied in", n, 3L);
            StringWriter out = new StringWriter();
            cm.copyOut("COPY imports (name, ssn, note, born, amount) TO STDOUT (FORMAT csv)", out);
            eq("copied out", out.toString(), in);
            eq("row by ssn", row(c, "SELECT name, note, born, amount FROM imports WHERE ssn = ?", ps -> ps.setString(1, "mxssn-copy-2")),
                "Dee, Jr.|note with \"quotes\", commas|2000-02-29|-0.001");
            eq("NULLs", row(c, "SELECT name, note, born, amount FROM imports WHERE ssn = ?", ps -> ps.setString(1, "mxssn-copy-3")),
                "Ed|null|null|null");
        }
    }

    static void refusedThenNormal() throws Exception {
        try (Connection c = connect(USER)) {
            expectState("ORDER BY a randomized column", "0A000", () -> names(c, "SELECT name FROM people ORDER BY note", ps -> {}));
            eq("then a normal query", names(c, "SELECT name FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-111-22-3333")), "Ann");
            expectState("LIKE on an encrypted column, as a parameter", "0A000",
                () -> names(c, "SELECT name FROM people WHERE note LIKE ?", ps -> ps.setString(1, "note%")));
            eq("then a normal insert", names(c, "INSERT INTO people (name, ssn) VALUES (?, ?) RETURNING name", ps -> {
                ps.setString(1, "AfterRefusal");
                ps.setString(2, "mxssn-after-refusal");
            }), "AfterRefusal");
        }
    }

    static void refusedInTransaction() throws Exception {
        try (Connection c = connect(USER)) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO people (name, ssn) VALUES (?, ?)")) {
                ps.setString(1, "RolledBack");
                ps.setString(2, "mxssn-rolled-back");
                ps.executeUpdate();
            }
            expectState("refused inside the transaction", "0A000", () -> names(c, "SELECT upper(note) FROM people", ps -> {}));
            expectState("the transaction is aborted", "25P02", () -> names(c, "SELECT name FROM people", ps -> {}));
            c.rollback();
            eq("after rollback: the insert is gone", names(c, "SELECT name FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-rolled-back")), "");
            c.commit();
        }
    }

    static void restrictedRole() throws Exception {
        try (Connection c = connect(RESTRICTED)) {
            eq("billing reads ssn, the rest is NULL",
                row(c, "SELECT name, ssn, note, born, amount, visits, doc FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-111-22-3333")),
                "Ann|mxssn-111-22-3333|null|null|null|null|null");
            expectState("billing may not write note", "42501", () -> {
                try (PreparedStatement ps = c.prepareStatement("UPDATE people SET note = ? WHERE ssn = ?")) {
                    ps.setString(1, "note by billing");
                    ps.setString(2, "mxssn-111-22-3333");
                    ps.executeUpdate();
                }
            });
            eq("then a normal query", names(c, "SELECT name FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-111-22-3333")), "Ann");
        }
        try (Connection c = connect(USER)) {
            eq("doctor still reads the note", row(c, "SELECT note FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-111-22-3333")),
                "note héllo, \"quoted\"");
        }
    }

    // "Can't change resolved type for param": pgjdbc's batch of two
    // setString parameters into encrypted text columns.
    static void batchTwoStrings(boolean rewrite) throws Exception {
        String tag = rewrite ? "rw" : "b";
        try (Connection c = connect(USER, "reWriteBatchedInserts", String.valueOf(rewrite))) {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO people(name, ssn) VALUES (?, ?)")) {
                ps.setString(1, "two-" + tag + "-1");
                ps.setString(2, "mxssn-two-" + tag + "-1");
                ps.addBatch();
                ps.setString(1, "two-" + tag + "-2");
                ps.setString(2, "mxssn-two-" + tag + "-2");
                ps.addBatch();
                ps.executeBatch();
            }
            eq("the connection is usable", names(c, "SELECT 'still here'", ps -> {}), "still here");
            eq("both rows", names(c, "SELECT name FROM people WHERE ssn IN (?, ?) ORDER BY name", ps -> {
                ps.setString(1, "mxssn-two-" + tag + "-1");
                ps.setString(2, "mxssn-two-" + tag + "-2");
            }), "two-" + tag + "-1,two-" + tag + "-2");
        }
    }

    // setDate sends text such as '1969-07-20 +00' with an unspecified type.
    static void setDate() throws Exception {
        dateRoundTrip("sd", (ps, i) -> ps.setDate(i, java.sql.Date.valueOf(BORN)));
    }

    // With a calendar in another zone the offset differs: '1969-07-20 +05:30'.
    static void setDateCalendar() throws Exception {
        Calendar kolkata = Calendar.getInstance(TimeZone.getTimeZone("Asia/Kolkata"));
        kolkata.clear();
        kolkata.set(1969, Calendar.JULY, 20);
        java.sql.Date d = new java.sql.Date(kolkata.getTimeInMillis());
        dateRoundTrip("sdc", (ps, i) -> ps.setDate(i, d, kolkata));
    }

    interface IndexedSetter { void set(PreparedStatement ps, int i) throws SQLException; }

    static void dateRoundTrip(String tag, IndexedSetter setter) throws Exception {
        try (Connection c = connect(USER)) {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO people (name, ssn, born) VALUES (?, ?, ?)")) {
                ps.setString(1, tag);
                ps.setString(2, "mxssn-" + tag);
                setter.set(ps, 3);
                eq("rows inserted", ps.executeUpdate(), 1);
            }
            eq("born", row(c, "SELECT born FROM people WHERE ssn = ?", ps -> ps.setString(1, "mxssn-" + tag)), "1969-07-20");
        }
    }

    // Inserts one value with set into column and reads it back as text.
    static void conversion(String column, Setter set, String want) throws Exception {
        try (Connection c = connect(USER)) {
            int id;
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO people (name, " + column + ") VALUES ('conversion', ?) RETURNING id")) {
                set.set(ps);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    id = rs.getInt(1);
                }
            }
            eq(column + " as text", row(c, "SELECT " + column + " FROM people WHERE id = ?", ps -> ps.setInt(1, id)), want);
        }
    }

    static void intEqualityInt8() throws Exception {
        try (Connection c = connect(USER)) {
            eq("visits = setInt(42)", names(c, "SELECT name FROM people WHERE visits = ?", ps -> ps.setInt(1, 42)), "Ann");
        }
    }

    static void anyArrayParam() throws Exception {
        try (Connection c = connect(USER)) {
            eq("ssn = ANY(setArray)", names(c, "SELECT name FROM people WHERE ssn = ANY(?)",
                ps -> ps.setArray(1, c.createArrayOf("text", new String[] {"mxssn-111-22-3333", "mxssn-nobody"}))), "Ann");
        }
    }

    // ---- helpers ----

    interface Setter { void set(PreparedStatement ps) throws SQLException; }

    static Connection connect(String user, String... props) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", "unused");
        p.setProperty("sslmode", "disable");
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "30");
        for (int i = 0; i < props.length; i += 2) p.setProperty(props[i], props[i + 1]);
        return DriverManager.getConnection("jdbc:postgresql://" + HOST + ":" + PORT + "/" + DB, p);
    }

    // The first column of every row, comma-separated.
    static String names(Connection c, String sql, Setter set) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            set.set(ps);
            try (ResultSet rs = ps.executeQuery()) {
                StringJoiner j = new StringJoiner(",");
                while (rs.next()) j.add(rs.getString(1));
                return j.toString();
            }
        }
    }

    // The only row, its columns as getString joined by '|' ("null" for NULL).
    static String row(Connection c, String sql, Setter set) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            set.set(ps);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) return "(no row)";
                StringJoiner j = new StringJoiner("|");
                for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) j.add(String.valueOf(rs.getString(i)));
                if (rs.next()) return "(more than one row)";
                return j.toString();
            }
        }
    }

    static void expectState(String what, String state, Body body) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            if (!state.equals(e.getSQLState())) {
                throw new AssertionError(what + ": SQLSTATE " + e.getSQLState() + " (" + e.getMessage() + "), want " + state);
            }
            return;
        }
        throw new AssertionError(what + ": no error, want SQLSTATE " + state);
    }

    static void eq(String what, Object got, Object want) {
        if (!Objects.equals(got, want)) {
            throw new AssertionError(what + ": got " + show(got) + ", want " + show(want));
        }
    }

    static String show(Object v) {
        return v instanceof String ? "\"" + v + "\"" : v + (v == null ? "" : " (" + v.getClass().getSimpleName() + ")");
    }

    static void check(String group, String name, Body body) {
        String full = "jdbc/" + group + "/" + name;
        if (SKIP.contains(group) || SKIP.contains(name) || SKIP.contains(full)) {
            System.out.println("skip " + full);
            skipped++;
            return;
        }
        try {
            body.run();
            System.out.println("ok   " + full);
            passed++;
        } catch (Throwable e) {
            String detail = e instanceof SQLException ? "SQLSTATE " + ((SQLException) e).getSQLState() + ": " + e.getMessage() : String.valueOf(e.getMessage());
            if (!(e instanceof AssertionError) && !(e instanceof SQLException)) detail = e.toString();
            System.out.println("FAIL " + full + ": " + detail.replace("\n", "\n     "));
            failed++;
        }
    }

    static void pgcloakOnly(String group, String name, Body body) {
        if (VIA_PGCLOAK) {
            check(group, name, body);
        } else {
            System.out.println("skip jdbc/" + group + "/" + name + " (pgcloak only)");
            skipped++;
        }
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) throw new IllegalStateException(name + " is not set");
        return v;
    }
}
