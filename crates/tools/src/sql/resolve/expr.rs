//! Expressions: every name, subquery, function, operator and cast in them, each by
//! allow-list (an expression kind this module does not know is refused).

use super::{NameKind, Resolver, Scope, Source, unsupported};
use crate::sql::functions;
use crate::sql::validate::{Refusal, Rule, SqlDialect, refuse};
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    JsonPathElem, UnaryOperator, Value, WindowFrameBound, WindowType,
};

/// MySQL's character-set introducers.
const CHARSETS: &[&str] = &[
    "_utf8", "_utf8mb3", "_utf8mb4", "_latin1", "_binary", "_ascii", "_ucs2", "_utf16", "_utf16le",
    "_utf32", "_latin2", "_cp1252",
];

impl<'p> Resolver<'p> {
    // ---- expressions -----------------------------------------------------------------------

    /// Resolves every name, subquery and function in `e`.
    pub fn expr(&mut self, e: &Expr, scope: &Scope<'_, 'p>) -> Result<(), Refusal> {
        self.enter()?;
        let out = self.expr_inner(e, scope);
        self.leave();
        out
    }

    pub(super) fn exprs<'e>(
        &mut self,
        es: impl IntoIterator<Item = &'e Expr>,
        scope: &Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        for e in es {
            self.expr(e, scope)?;
        }
        Ok(())
    }

    pub(super) fn expr_inner(&mut self, e: &Expr, scope: &Scope<'_, 'p>) -> Result<(), Refusal> {
        match e {
            Expr::Identifier(i) => self.column(i, scope),
            Expr::CompoundIdentifier(parts) => self.qualified(parts, scope),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.expr(root, scope)?;
                for a in access_chain {
                    match a {
                        // A field name of a composite value, not a column.
                        sqlparser::ast::AccessExpr::Dot(Expr::Identifier(_)) => {}
                        sqlparser::ast::AccessExpr::Dot(_) => {
                            return unsupported("this field access");
                        }
                        sqlparser::ast::AccessExpr::Subscript(s) => self.subscript(s, scope)?,
                    }
                }
                Ok(())
            }
            Expr::JsonAccess { value, path } => {
                self.expr(value, scope)?;
                for p in &path.path {
                    match p {
                        JsonPathElem::Dot { .. } => {}
                        JsonPathElem::Bracket { key } => self.expr(key, scope)?,
                        #[allow(unreachable_patterns)]
                        _ => return unsupported("this JSON path"),
                    }
                }
                Ok(())
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::Nested(x)
            | Expr::Collate { expr: x, .. }
            | Expr::IsJson { expr: x, .. }
            | Expr::IsNormalized { expr: x, .. } => self.expr(x, scope),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.exprs([a.as_ref(), b.as_ref()], scope)
            }
            Expr::In {
                expr,
                target,
                negated: _,
                global,
            } => {
                if *global {
                    return unsupported("GLOBAL IN");
                }
                self.expr(expr, scope)?;
                match target {
                    sqlparser::ast::InTarget::List(list) => self.exprs(list, scope),
                    sqlparser::ast::InTarget::Subquery(q) => self.query(q, scope).map(|_| ()),
                    // SQLite's `x IN name`: every row of a table or CTE.
                    sqlparser::ast::InTarget::Table { name, args: None } => {
                        let parts = self.name_parts(name, NameKind::Relation)?;
                        match parts.as_slice() {
                            [one] if scope.cte(one).is_some() => Ok(()),
                            _ => match self.table_source(&parts)? {
                                Source::Table {
                                    key,
                                    columns: Some(_),
                                    ..
                                } => refuse(
                                    Rule::ColumnNotAllowed,
                                    format!(
                                        "`IN {key}` reads every column of {key}; use IN (SELECT allowed_column FROM {key})"
                                    ),
                                ),
                                _ => Ok(()),
                            },
                        }
                    }
                    _ => unsupported("IN over this kind of target"),
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => self.exprs([expr.as_ref(), low.as_ref(), high.as_ref()], scope),
            Expr::BinaryOp { .. } => {
                // Long chains (`a OR b OR …`, `1 + 1 + …`) nest to the left: walk that spine
                // in a loop, so their length does not count as depth.
                let mut cur = e;
                while let Expr::BinaryOp { left, op, right } = cur {
                    operator_allowed(op)?;
                    self.expr(right, scope)?;
                    cur = left;
                }
                self.expr(cur, scope)
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                self.exprs([expr.as_ref(), pattern.as_ref()], scope)?;
                self.exprs(escape_char.iter().map(|b| b.as_ref()), scope)
            }
            Expr::RLike { expr, pattern, .. } => {
                self.exprs([expr.as_ref(), pattern.as_ref()], scope)
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                operator_allowed(compare_op)?;
                self.exprs([left.as_ref(), right.as_ref()], scope)
            }
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Plus
                | UnaryOperator::Minus
                | UnaryOperator::Not
                | UnaryOperator::BitwiseNot
                | UnaryOperator::PGAbs
                | UnaryOperator::PGSquareRoot
                | UnaryOperator::PGCubeRoot => self.expr(expr, scope),
                _ => unsupported("this unary operator"),
            },
            Expr::Convert {
                expr,
                data_type,
                styles,
                ..
            } => {
                if let Some(t) = data_type {
                    cast_allowed(t)?;
                }
                self.expr(expr, scope)?;
                self.exprs(styles, scope)
            }
            Expr::Cast {
                expr,
                data_type,
                format,
                kind: _,
            } => {
                if format.is_some() {
                    return unsupported("CAST … FORMAT");
                }
                cast_allowed(data_type)?;
                self.expr(expr, scope)
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => self.exprs([timestamp.as_ref(), time_zone.as_ref()], scope),
            Expr::Extract { expr, .. } => self.expr(expr, scope),
            Expr::Ceil { expr, .. } | Expr::Floor { expr, .. } => self.expr(expr, scope),
            Expr::Position { expr, r#in } => self.exprs([expr.as_ref(), r#in.as_ref()], scope),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr, scope)?;
                self.exprs(
                    substring_from
                        .iter()
                        .chain(substring_for.iter())
                        .map(|b| b.as_ref()),
                    scope,
                )
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.expr(expr, scope)?;
                self.exprs(trim_what.iter().map(|b| b.as_ref()), scope)?;
                self.exprs(trim_characters.iter().flatten(), scope)
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.exprs(
                    [expr.as_ref(), overlay_what.as_ref(), overlay_from.as_ref()],
                    scope,
                )?;
                self.exprs(overlay_for.iter().map(|b| b.as_ref()), scope)
            }
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => refuse(
                    Rule::VariableNotAllowed,
                    format!("`{p}`: parameters are refused; write the value"),
                ),
                _ => Ok(()),
            },
            // MySQL character-set introducers (`_utf8mb4'x'`); any other word before a string
            // is a column and an alias in MariaDB and SQLite (`_secret 'x'`).
            Expr::Prefixed { prefix, value }
                if self.dialect == SqlDialect::Mysql
                    && matches!(value.as_ref(), Expr::Value(_))
                    && CHARSETS.contains(&prefix.value.to_ascii_lowercase().as_str()) =>
            {
                Ok(())
            }
            Expr::Prefixed { .. } => {
                unsupported("a word before a string (write `column AS alias`)")
            }
            Expr::TypedString(ts) => cast_allowed(&ts.data_type),
            Expr::Function(f) => self.function(f, scope),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.exprs(operand.iter().map(|b| b.as_ref()), scope)?;
                for c in conditions {
                    self.exprs([&c.condition, &c.result], scope)?;
                }
                self.exprs(else_result.iter().map(|b| b.as_ref()), scope)
            }
            Expr::Exists { subquery, .. } => self.query(subquery, scope).map(|_| ()),
            Expr::Subquery(q) => self.query(q, scope).map(|_| ()),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                self.exprs(sets.iter().flatten(), scope)
            }
            Expr::Tuple(items) => self.exprs(items, scope),
            Expr::Array(a) => self.exprs(&a.elem, scope),
            Expr::Interval(i) => self.expr(&i.value, scope),
            _ => unsupported("this kind of expression"),
        }
    }

    pub(super) fn subscript(
        &mut self,
        s: &sqlparser::ast::Subscript,
        scope: &Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        match s {
            sqlparser::ast::Subscript::Index { index } => self.expr(index, scope),
            sqlparser::ast::Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            } => self.exprs(lower_bound.iter().chain(upper_bound).chain(stride), scope),
        }
    }

    pub(super) fn window_spec(
        &mut self,
        spec: &sqlparser::ast::WindowSpec,
        scope: &Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        self.exprs(&spec.partition_by, scope)?;
        for o in &spec.order_by {
            if o.with_fill.is_some() {
                return unsupported("WITH FILL");
            }
            self.expr(&o.expr, scope)?;
        }
        if let Some(frame) = &spec.window_frame {
            for b in std::iter::once(&frame.start_bound).chain(frame.end_bound.iter()) {
                if let WindowFrameBound::Preceding(Some(e)) | WindowFrameBound::Following(Some(e)) =
                    b
                {
                    self.expr(e, scope)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn function(
        &mut self,
        f: &sqlparser::ast::Function,
        scope: &Scope<'_, 'p>,
    ) -> Result<(), Refusal> {
        let parts = self.name_parts(&f.name, NameKind::Column)?;
        let shown = parts.join(".");
        let name = match parts.as_slice() {
            [one] => one.to_ascii_lowercase(),
            _ => {
                return refuse(
                    Rule::FunctionNotAllowed,
                    format!(
                        "`{shown}`: schema-qualified functions are refused; call built-in functions by name"
                    ),
                );
            }
        };
        // A quoted name in PostgreSQL is exact: `"LOWER"` is not `lower`.
        let allowed = parts[0] == name
            && !self.policy.denied_functions.contains(&name)
            && !functions::never_allowed(&name)
            && (functions::built_in(self.dialect, &name)
                || self.policy.allowed_functions.contains(&name));
        if !allowed {
            return refuse(
                Rule::FunctionNotAllowed,
                format!(
                    "the function `{shown}` is not allowed; use built-in aggregate, string, math, date or JSON functions"
                ),
            );
        }
        if f.uses_odbc_syntax || !matches!(f.parameters, FunctionArguments::None) {
            return unsupported("this function call syntax");
        }
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => {
                self.query(q, scope)?;
            }
            FunctionArguments::List(list) => {
                for arg in &list.args {
                    let arg = match arg {
                        FunctionArg::Unnamed(a) => a,
                        FunctionArg::Named { arg, .. } => arg,
                        FunctionArg::ExprNamed { .. } => {
                            return unsupported("this named argument");
                        }
                    };
                    match arg {
                        FunctionArgExpr::Expr(e) => self.expr(e, scope)?,
                        FunctionArgExpr::Wildcard if functions::takes_star(&name) => {}
                        FunctionArgExpr::QualifiedWildcard(q) => self.qualified_star(q, scope)?,
                        _ => {
                            return refuse(
                                Rule::ColumnNotAllowed,
                                format!("`{name}(*)` is not allowed; name the columns"),
                            );
                        }
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(items) => {
                            for o in items {
                                self.expr(&o.expr, scope)?;
                            }
                        }
                        FunctionArgumentClause::Limit(e) | FunctionArgumentClause::Where(e) => {
                            self.expr(e, scope)?
                        }
                        FunctionArgumentClause::IgnoreOrRespectNulls(_)
                        | FunctionArgumentClause::Separator(_)
                        | FunctionArgumentClause::JsonNullClause(_) => {}
                        _ => return unsupported("this function argument clause"),
                    }
                }
            }
        }
        for o in &f.within_group {
            self.expr(&o.expr, scope)?;
        }
        if let Some(filter) = &f.filter {
            self.expr(filter, scope)?;
        }
        match &f.over {
            None | Some(WindowType::NamedWindow(_)) => {}
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec, scope)?,
        }
        Ok(())
    }
}

fn cast_allowed(t: &sqlparser::ast::DataType) -> Result<(), Refusal> {
    if functions::type_allowed(t) {
        Ok(())
    } else {
        refuse(
            Rule::TypeNotAllowed,
            format!(
                "casting to `{t}` is not allowed; cast to plain number, text, date or JSON types"
            ),
        )
    }
}

fn operator_allowed(op: &BinaryOperator) -> Result<(), Refusal> {
    use BinaryOperator as B;
    match op {
        B::Plus
        | B::Minus
        | B::Multiply
        | B::Divide
        | B::Modulo
        | B::StringConcat
        | B::Gt
        | B::Lt
        | B::GtEq
        | B::LtEq
        | B::Spaceship
        | B::Eq
        | B::NotEq
        | B::And
        | B::Or
        | B::Xor
        | B::BitwiseOr
        | B::BitwiseAnd
        | B::BitwiseXor
        | B::MyIntegerDivide
        | B::Regexp
        | B::Glob
        | B::PGBitwiseXor
        | B::PGBitwiseShiftLeft
        | B::PGBitwiseShiftRight
        | B::PGExp
        | B::PGOverlap
        | B::PGRegexMatch
        | B::PGRegexIMatch
        | B::PGRegexNotMatch
        | B::PGRegexNotIMatch
        | B::PGLikeMatch
        | B::PGILikeMatch
        | B::PGNotLikeMatch
        | B::PGNotILikeMatch
        | B::PGStartsWith
        | B::Arrow
        | B::LongArrow
        | B::HashArrow
        | B::HashLongArrow
        | B::AtArrow
        | B::ArrowAt
        | B::HashMinus
        | B::Question
        | B::QuestionAnd
        | B::QuestionPipe
        | B::Overlaps
        | B::Is
        | B::IsNot => Ok(()),
        _ => refuse(
            Rule::Unsupported,
            format!("the operator `{op}` is not allowed"),
        ),
    }
}
