//! Which functions and types a statement may use: an allow-list per dialect of functions known
//! to be pure and harmless (aggregates, window functions, string, math, date/time, JSON
//! accessors, conditionals), and of plain types a value may be cast to. Whatever a list does
//! not name is refused, user-defined and schema-qualified functions included.
//!
//! Operators may add functions in configuration (`allowed_functions`), but never one that
//! [`never_allowed`] names: system information, files, network, sleep, locks, sequences,
//! settings, SQL given as text, large objects, extensions.

use super::validate::SqlDialect;
use sqlparser::ast::DataType;

/// Functions every dialect has, with the same harmless meaning.
const COMMON: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // strings
    "lower",
    "upper",
    "length",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "concat",
    "concat_ws",
    "instr",
    "reverse",
    "char_length",
    "character_length",
    "left",
    "right",
    "lpad",
    "rpad",
    "repeat",
    "ascii",
    "hex",
    "octet_length",
    // math
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "mod",
    "power",
    "pow",
    "sqrt",
    "exp",
    "ln",
    "log",
    "log10",
    "log2",
    "sign",
    "pi",
    "degrees",
    "radians",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "cot",
    "random",
    "greatest",
    "least",
    // conditionals
    "coalesce",
    "nullif",
    // date and time
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    // JSON
    "json_extract",
    "json_object",
    "json_array",
    "json_type",
    "json_valid",
    "json_quote",
    "json_array_length",
];

/// SQLite's own harmless functions (core, date/time, math, JSON1).
const SQLITE: &[&str] = &[
    "total",
    "group_concat",
    "string_agg",
    "ifnull",
    "iif",
    "typeof",
    "unicode",
    "char",
    "printf",
    "format",
    "quote",
    "glob",
    "like",
    "trunc",
    "likelihood",
    "likely",
    "unlikely",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "timediff",
    "json",
    "jsonb",
    "json_insert",
    "json_replace",
    "json_set",
    "json_remove",
    "json_patch",
    "json_group_array",
    "json_group_object",
    "json_error_position",
    "json_pretty",
    "acosh",
    "asinh",
    "atanh",
    "cosh",
    "sinh",
    "tanh",
    "octet_length",
    "concat_ws",
    "soundex",
];

/// PostgreSQL's harmless built-ins.
const POSTGRES: &[&str] = &[
    "string_agg",
    "array_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "any_value",
    "grouping",
    "btrim",
    "position",
    "strpos",
    "initcap",
    "split_part",
    "starts_with",
    "translate",
    "chr",
    "format",
    "to_char",
    "to_number",
    "to_date",
    "to_timestamp",
    "md5",
    "encode",
    "decode",
    "to_hex",
    "regexp_replace",
    "regexp_substr",
    "regexp_like",
    "regexp_count",
    "regexp_instr",
    "regexp_split_to_array",
    "string_to_array",
    "array_to_string",
    "array_length",
    "array_position",
    "array_positions",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_remove",
    "array_replace",
    "cardinality",
    "array_dims",
    "array_lower",
    "array_upper",
    "array",
    "normalize",
    "overlay",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "left",
    "right",
    "cbrt",
    "trunc",
    "div",
    "gcd",
    "lcm",
    "factorial",
    "width_bucket",
    "scale",
    "now",
    "date_trunc",
    "date_part",
    "date_bin",
    "extract",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "statement_timestamp",
    "transaction_timestamp",
    "clock_timestamp",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_array_length",
    "json_typeof",
    "jsonb_typeof",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_to_json",
    "json_strip_nulls",
    "jsonb_strip_nulls",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_insert",
    "jsonb_path_exists",
    "jsonb_path_match",
    "json_object_keys",
    "jsonb_object_keys",
    "num_nulls",
    "num_nonnulls",
    "bit_length",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "ltrim",
    "rtrim",
    "unistr",
    "casefold",
    "date",
    "row",
];

/// MySQL's and MariaDB's harmless built-ins.
const MYSQL: &[&str] = &[
    "group_concat",
    "bit_and",
    "bit_or",
    "bit_xor",
    "std",
    "any_value",
    "json_arrayagg",
    "json_objectagg",
    "grouping",
    "ifnull",
    "if",
    "lcase",
    "ucase",
    "mid",
    "locate",
    "position",
    "substring_index",
    "field",
    "find_in_set",
    "elt",
    "space",
    "strcmp",
    "format",
    "char",
    "soundex",
    "md5",
    "sha1",
    "sha2",
    "unhex",
    "truncate",
    "conv",
    "bin",
    "oct",
    "crc32",
    "div",
    "regexp_replace",
    "regexp_substr",
    "regexp_like",
    "regexp_instr",
    "now",
    "curdate",
    "curtime",
    "utc_date",
    "utc_time",
    "utc_timestamp",
    "date_add",
    "date_sub",
    "adddate",
    "subdate",
    "addtime",
    "subtime",
    "datediff",
    "timediff",
    "timestampdiff",
    "timestampadd",
    "date_format",
    "time_format",
    "str_to_date",
    "year",
    "month",
    "day",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "dayname",
    "monthname",
    "hour",
    "minute",
    "second",
    "microsecond",
    "week",
    "weekday",
    "weekofyear",
    "yearweek",
    "quarter",
    "last_day",
    "makedate",
    "maketime",
    "from_days",
    "to_days",
    "from_unixtime",
    "unix_timestamp",
    "convert_tz",
    "period_add",
    "period_diff",
    "sec_to_time",
    "time_to_sec",
    "date",
    "time",
    "timestamp",
    "extract",
    "json_contains",
    "json_contains_path",
    "json_keys",
    "json_length",
    "json_search",
    "json_value",
    "json_unquote",
    "json_set",
    "json_insert",
    "json_replace",
    "json_remove",
    "json_merge_patch",
    "json_merge_preserve",
    "json_depth",
    "json_overlaps",
    "json_pretty",
    "json_compact",
    "json_detailed",
    "json_loose",
    "json_exists",
    "json_query",
    "json_array_append",
    "json_array_insert",
    "bit_length",
    "octet_length",
    "weight_string",
    "to_base64",
    "from_base64",
    "inet_aton",
    "inet_ntoa",
    "is_ipv4",
    "is_ipv6",
    "bit_count",
    "make_set",
    "export_set",
];

/// Names refused whatever the configuration says: they reveal the server, its users or
/// settings, reach files or the network, sleep, take locks, move sequences, run SQL given as
/// text, or load code. Prefixes cover families (`pg_*`, `sqlite_*`, `lo_*`, `dblink*`, the
/// `*_to_xml*` dumps).
const NEVER: &[&str] = &[
    "version",
    "user",
    "current_user",
    "session_user",
    "system_user",
    "current_role",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_database",
    "database",
    "schema",
    "connection_id",
    "last_insert_id",
    "found_rows",
    "row_count",
    "current_setting",
    "set_config",
    "nextval",
    "setval",
    "currval",
    "lastval",
    "sleep",
    "benchmark",
    "load_file",
    "readfile",
    "writefile",
    "edit",
    "load_extension",
    "fts3_tokenizer",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "is_used_lock",
    "master_pos_wait",
    "source_pos_wait",
    "master_gtid_wait",
    "ts_stat",
    "ts_rewrite",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "database_to_xml",
    "xpath",
    "xmlparse",
    "inet_server_addr",
    "inet_server_port",
    "inet_client_addr",
    "inet_client_port",
    "txid_current",
    "has_table_privilege",
    "has_column_privilege",
    "has_database_privilege",
    "has_schema_privilege",
    "has_function_privilege",
    "obj_description",
    "col_description",
    "shobj_description",
    "format_type",
    "to_regclass",
    "to_regproc",
    "to_regtype",
    "randomblob",
    "zeroblob",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "sqlite_version",
    "uuid_short",
    "sys_eval",
    "sys_exec",
    "uuid",
    "gen_random_uuid",
    "setseed",
    "encrypt",
    "des_encrypt",
    "des_decrypt",
    "aes_encrypt",
    "aes_decrypt",
    "password",
    "old_password",
    "compress",
    "uncompress",
    "sys_guid",
];
const NEVER_PREFIXES: &[&str] = &[
    "pg_",
    "sqlite_",
    "lo_",
    "dblink",
    "xml",
    "query_to",
    "table_to",
    "schema_to",
    "database_to",
    "cursor_to",
    "txid_",
    "has_",
    "sys_",
    "mysql_",
    "wsrep_",
    "binlog_",
    "current_setting",
];

/// Whether `name` (lower case) may never be called, even if configuration allows it.
pub fn never_allowed(name: &str) -> bool {
    NEVER.contains(&name) || NEVER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether the built-in allow-list of `dialect` has `name` (lower case).
pub(crate) fn built_in(dialect: SqlDialect, name: &str) -> bool {
    if never_allowed(name) {
        return false;
    }
    COMMON.contains(&name)
        || match dialect {
            SqlDialect::Sqlite => SQLITE.contains(&name),
            SqlDialect::Postgres => POSTGRES.contains(&name),
            SqlDialect::Mysql => MYSQL.contains(&name),
        }
}

/// Functions that may take `*` as their argument.
pub(crate) fn takes_star(name: &str) -> bool {
    name == "count"
}

/// Whether a value may be cast to `t`: plain numbers, strings, dates and times, booleans,
/// JSON and byte strings (and arrays of them). Catalog types (`regclass`, `regproc` …),
/// user-defined types and composite types are refused.
pub(crate) fn type_allowed(t: &DataType) -> bool {
    use DataType as T;
    match t {
        T::Character(_)
        | T::Char(_)
        | T::CharacterVarying(_)
        | T::CharVarying(_)
        | T::Varchar(_)
        | T::Nvarchar(_)
        | T::Uuid
        | T::Text
        | T::TinyText
        | T::MediumText
        | T::LongText
        | T::String(_)
        | T::Binary(_)
        | T::Varbinary(_)
        | T::Blob(_)
        | T::Bytea
        | T::Numeric(_)
        | T::Decimal(_)
        | T::DecimalUnsigned(_)
        | T::Dec(_)
        | T::DecUnsigned(_)
        | T::Float(_)
        | T::FloatUnsigned(_)
        | T::TinyInt(_)
        | T::TinyIntUnsigned(_)
        | T::Int2(_)
        | T::SmallInt(_)
        | T::SmallIntUnsigned(_)
        | T::MediumInt(_)
        | T::MediumIntUnsigned(_)
        | T::Int(_)
        | T::Int4(_)
        | T::Int8(_)
        | T::Integer(_)
        | T::IntUnsigned(_)
        | T::IntegerUnsigned(_)
        | T::BigInt(_)
        | T::BigIntUnsigned(_)
        | T::Signed
        | T::SignedInteger
        | T::Unsigned
        | T::UnsignedInteger
        | T::Float4
        | T::Real
        | T::Float8
        | T::Double(_)
        | T::DoublePrecision
        | T::Bool
        | T::Boolean
        | T::Date
        | T::Time(..)
        | T::Datetime(_)
        | T::Timestamp(..)
        | T::Interval { .. }
        | T::JSON
        | T::JSONB
        | T::Bit(_)
        | T::BitVarying(_)
        | T::VarBit(_) => true,
        T::Array(
            sqlparser::ast::ArrayElemTypeDef::AngleBracket(t)
            | sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _)
            | sqlparser::ast::ArrayElemTypeDef::Parenthesis(t),
        ) => type_allowed(t),
        T::Custom(name, modifiers) => {
            modifiers.is_empty()
                && name.0.len() == 1
                && matches!(
                    name.to_string().to_ascii_lowercase().as_str(),
                    "int" | "float" | "money" | "timestamptz" | "timetz" | "serial" | "bigserial"
                )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_never_list_wins_over_every_allow_list() {
        for d in [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql] {
            for name in COMMON.iter().chain(SQLITE).chain(POSTGRES).chain(MYSQL) {
                if never_allowed(name) {
                    assert!(!built_in(d, name), "{name}");
                }
            }
            for name in [
                "pg_sleep",
                "version",
                "sqlite_version",
                "load_file",
                "nextval",
            ] {
                assert!(!built_in(d, name), "{name}");
            }
        }
        assert!(built_in(SqlDialect::Postgres, "date_trunc"));
        assert!(!built_in(SqlDialect::Sqlite, "date_trunc"));
    }
}
