// pgjdbc logs in through pgcloak with a password and reads an encrypted
// column: run by proxy/scram_test.go as a single-file source program
//   java -cp /usr/share/java/postgresql.jar Login.java
// with LOGIN_URL (a jdbc:postgresql: URL), LOGIN_USER, LOGIN_PASSWORD and
// LOGIN_SQL. Prints the first row's columns joined by '|', or the
// SQLSTATE and message of the failure, and exits 1 on failure.

import java.sql.*;
import java.util.*;

public class Login {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.setProperty("user", System.getenv("LOGIN_USER"));
        props.setProperty("password", System.getenv("LOGIN_PASSWORD"));
        try (Connection c = DriverManager.getConnection(System.getenv("LOGIN_URL"), props);
             Statement st = c.createStatement();
             ResultSet rs = st.executeQuery(System.getenv("LOGIN_SQL"))) {
            StringJoiner row = new StringJoiner("|");
            if (rs.next()) {
                for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
                    row.add(String.valueOf(rs.getString(i)));
                }
            }
            System.out.println(row);
        } catch (SQLException e) {
            System.out.println("error " + e.getSQLState() + " " + e.getMessage());
            System.exit(1);
        }
    }
}
