//! Column references: unqualified names resolved innermost scope first, as the databases
//! do; qualified ones through the relation they name; `*` and whole-row references.

use super::{
    NameKind, Relation, Resolver, Scope, Source, column_message, list, restricted, star_message,
    unsupported,
};
use crate::sql::validate::{Refusal, Rule, SqlDialect, refuse};
use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

impl<'p> Resolver<'p> {
    // ---- columns ---------------------------------------------------------------------------

    /// An unqualified name: resolved innermost scope first; every restricted table it could
    /// reach must allow it, up to the first scope where it is known to exist.
    pub fn column(&mut self, ident: &Ident, scope: &Scope<'_, 'p>) -> Result<(), Refusal> {
        self.columns_seen += 1;
        if ident.value.starts_with('@') || ident.value.starts_with('$') {
            return refuse(
                Rule::VariableNotAllowed,
                format!("`{}`: variables are refused", ident.value),
            );
        }
        let name = self.norm(ident, NameKind::Column);
        // Bare keywords that are functions (MySQL parses them as names).
        if ident.quote_style.is_none()
            && (matches!(
                name.as_str(),
                "current_user"
                    | "session_user"
                    | "system_user"
                    | "current_role"
                    | "current_schema"
                    | "current_catalog"
            ) || (self.dialect == SqlDialect::Postgres && name == "user"))
        {
            return refuse(
                Rule::FunctionNotAllowed,
                format!(
                    "`{}` reveals the database's users or settings; it is not allowed",
                    ident.value
                ),
            );
        }
        let as_relation = self.norm(ident, NameKind::Relation);
        // A name that is also a restricted relation's may be a whole-row reference to it.
        for s in scope.chain() {
            for r in &s.relations {
                if let Source::Table {
                    key,
                    columns: Some(cols),
                    ..
                } = &r.source
                    && r.name == as_relation
                    && !cols.contains(&name)
                {
                    return refuse(
                        Rule::ColumnNotAllowed,
                        format!(
                            "`{}` names the whole row of {key}, whose columns are restricted; name its allowed columns ({})",
                            ident.value,
                            list(cols)
                        ),
                    );
                }
            }
        }
        // A name no relation in reach could have is not a column here: the database would
        // resolve it somewhere this query does not show (or fail).
        if scope.chain().all(|s| s.relations.is_empty()) {
            return refuse(
                Rule::Unsupported,
                format!(
                    "`{}` is not a column of any table or alias this query reads",
                    ident.value
                ),
            );
        }
        // MySQL compares column names ignoring case beyond ASCII too: a non-ASCII name is never
        // taken as absent from a table's known columns.
        let may_skip = self.dialect != SqlDialect::Mysql || name.is_ascii();
        // Every restricted table in reach must allow the name, at every level: the scopes here
        // may be wider than the database's (a derived table sees earlier FROM items, an ON
        // clause the whole FROM), so no level is taken as where the database stops looking.
        for s in scope.chain() {
            for r in &s.relations {
                match &r.source {
                    // Known not to have it: not there.
                    Source::Table { all: Some(all), .. } if may_skip && !all.contains(&name) => {}
                    Source::Table {
                        key,
                        columns: Some(cols),
                        ..
                    } if !cols.contains(&name) => {
                        return refuse(Rule::ColumnNotAllowed, column_message(&name, key, cols));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The relations `qualifier` names: those of the innermost scope that has one.
    pub(super) fn qualified_relations<'a>(
        &self,
        qualifier: &[&Ident],
        scope: &'a Scope<'_, 'p>,
    ) -> Result<Vec<&'a Relation<'p>>, Refusal> {
        let (schema, name) = match qualifier {
            [t] => (None, self.norm(t, NameKind::Relation)),
            [s, t] => (
                Some(self.norm(s, NameKind::Relation)),
                self.norm(t, NameKind::Relation),
            ),
            _ => return unsupported("a name with this many parts"),
        };
        // Every relation of that name in reach, not only the innermost: the scopes here may be
        // wider than the database's.
        let found: Vec<&Relation<'p>> = scope
            .chain()
            .flat_map(|s| s.relations.iter())
            .filter(|r| r.name == name && (schema.is_none() || r.schema == schema))
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        let shown: Vec<&str> = qualifier.iter().map(|i| i.value.as_str()).collect();
        refuse(
            Rule::Unsupported,
            format!(
                "`{}` is not a table or alias of this query",
                shown.join(".")
            ),
        )
    }

    pub(super) fn qualified(
        &mut self,
        parts: &[Ident],
        scope: &Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        self.columns_seen += 1;
        if parts
            .first()
            .is_some_and(|p| p.value.starts_with('@') || p.value.starts_with('$'))
        {
            return refuse(
                Rule::VariableNotAllowed,
                format!("`{}`: variables are refused", parts[0].value),
            );
        }
        let Some((column, qualifier)) = parts.split_last() else {
            return unsupported("an empty name");
        };
        let qualifier: Vec<&Ident> = qualifier.iter().collect();
        let name = self.norm(column, NameKind::Column);
        for r in self.qualified_relations(&qualifier, scope)? {
            if let Source::Table {
                key,
                columns: Some(cols),
                ..
            } = &r.source
                && !cols.contains(&name)
            {
                return refuse(Rule::ColumnNotAllowed, column_message(&name, key, cols));
            }
        }
        Ok(())
    }

    pub(super) fn qualified_star(
        &self,
        name: &ObjectName,
        scope: &Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        let idents: Vec<&Ident> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        if idents.len() != name.0.len() {
            return unsupported("a function in a name");
        }
        for r in self.qualified_relations(&idents, scope)? {
            if let Some(cols) = restricted(r) {
                return refuse(Rule::ColumnNotAllowed, star_message(&r.name, Some(cols)));
            }
        }
        Ok(())
    }
}
