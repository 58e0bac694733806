//! The catalog's rules: what a product id, a price and a search look like.
//! No tonic and no SQL here.

use kit::Violations;
use kit::paging::PageRequest;

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// A product id (also its SKU): 3 to 64 lowercase letters, digits and
/// hyphens, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductId(String);

impl ProductId {
    /// Checks `text`, saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        kit::values::check_sku(text)?;
        Ok(ProductId(text.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An amount in one currency: `units + nanos / 10^9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// ISO 4217 code.
    pub currency_code: String,
    /// Whole units.
    pub units: i64,
    /// Billionths of a unit.
    pub nanos: i32,
}

/// A product for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Id and SKU.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// A sentence or two.
    pub description: String,
    /// Picture path.
    pub picture: String,
    /// Unit price.
    pub price: Price,
    /// Lowercase categories.
    pub categories: Vec<String>,
    /// Shipping weight of one unit.
    pub weight_grams: i32,
}

/// A search: lowercase words that must all appear in a product's name,
/// description or categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words, lowercased.
    pub words: Vec<String>,
}

impl SearchQuery {
    /// Checks `text`, saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(format!(
                "must be at most {MAX_QUERY_CHARS} characters, got {chars}"
            ));
        }
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        if words.is_empty() {
            return Err("must contain at least one word, e.g. \"kitchen\"".into());
        }
        Ok(SearchQuery { words })
    }
}

/// A page of products and what comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPage {
    /// The products, by id.
    pub products: Vec<Product>,
    /// The id to resume after, when there are more.
    pub next_after: Option<String>,
    /// How many products match in all.
    pub total: u64,
}

/// A validated ListProducts request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListProducts {
    /// Which page.
    pub page: PageRequest,
}

/// A validated SearchProducts request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchProducts {
    /// What to look for.
    pub query: SearchQuery,
    /// Which page.
    pub page: PageRequest,
}

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(#[from] Violations),
    /// No product has the id.
    #[error("product `{}` does not exist", .0.as_str())]
    NotFound(ProductId),
    /// The database failed.
    #[error("catalog store: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// A stored row does not make a valid product.
    #[error("catalog store holds an invalid product `{id}`: {reason}")]
    Corrupt {
        /// The row's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_checked() {
        assert!(ProductId::parse("vintage-typewriter").is_ok());
        assert!(ProductId::parse("mug").is_ok());
        assert!(ProductId::parse("").unwrap_err().contains("must not be empty"));
        assert!(
            ProductId::parse("Bad ID!")
                .unwrap_err()
                .contains("lowercase letters")
        );
        assert!(ProductId::parse("-mug").is_err());
        assert!(ProductId::parse("ab").is_err());
        assert!(ProductId::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn queries_are_split_and_lowercased() {
        assert_eq!(
            SearchQuery::parse("  Living ROOM ").unwrap().words,
            ["living", "room"]
        );
        assert!(SearchQuery::parse("   ").is_err());
        assert!(
            SearchQuery::parse(&"x".repeat(201))
                .unwrap_err()
                .contains("at most 200")
        );
    }
}
