// Run by tests/query.rs: the PostgreSQL JDBC driver, as DBeaver and other JDBC tools use
// it, signs in, lists schemas, tables and columns through DatabaseMetaData (pg_catalog
// queries), and runs prepared statements with bound parameters.
// Arguments: port user password purpose table
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class Probe {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/" + args[3];
        try (Connection c = DriverManager.getConnection(url, args[1], args[2])) {
            DatabaseMetaData meta = c.getMetaData();
            try (ResultSet r = meta.getSchemas()) {
                while (r.next()) {
                    System.out.println("schema|" + r.getString("TABLE_SCHEM"));
                }
            }
            try (ResultSet r = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
                while (r.next()) {
                    System.out.println("table|" + r.getString("TABLE_SCHEM") + "|" + r.getString("TABLE_NAME"));
                }
            }
            try (ResultSet r = meta.getColumns(null, null, "出入境记录", "%")) {
                while (r.next()) {
                    System.out.println("column|" + r.getString("COLUMN_NAME") + "|" + r.getString("TYPE_NAME"));
                }
            }
            String shown = "SELECT person_id, destination FROM " + args[4]
                + " WHERE destination = ? ORDER BY record_no LIMIT 3";
            try (PreparedStatement p = c.prepareStatement(shown)) {
                p.setString(1, "澳门");
                try (ResultSet r = p.executeQuery()) {
                    while (r.next()) {
                        System.out.println("row|" + r.getString(1) + "|" + r.getString(2));
                    }
                }
            }
            String hidden = "SELECT count(*) FROM " + args[4] + " WHERE destination = ?";
            try (PreparedStatement p = c.prepareStatement(hidden)) {
                p.setString(1, "泰国");
                try (ResultSet r = p.executeQuery()) {
                    r.next();
                    System.out.println("hidden|" + r.getLong(1));
                }
            }
        }
    }
}
