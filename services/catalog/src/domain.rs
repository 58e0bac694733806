//! The catalog's rules: what a product id, a price and a search look like.
//! No tonic and no SQL here.

use kit_store::paging::PageRequest;
use kit_values::Violations;

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// A product id (also its SKU): 3 to 64 lowercase letters, digits and
/// hyphens, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductId(String);

impl ProductId {
    /// Checks `text`, saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        kit_values::check_sku(text)?;
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

/// The whole catalog, in memory: it is small and read-mostly, so every read
/// is served from here instead of queueing for a database connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// By id.
    products: Vec<Product>,
    /// Per product, its name, description and categories, lowercased, for search.
    searchable: Vec<String>,
}

impl Catalog {
    /// A catalog of `products`, in any order.
    pub fn new(mut products: Vec<Product>) -> Self {
        products.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let searchable = products
            .iter()
            .map(|p| {
                format!(
                    "{}\n{}\n{}",
                    p.name.to_lowercase(),
                    p.description.to_lowercase(),
                    p.categories.join(",").to_lowercase()
                )
            })
            .collect();
        Catalog { products, searchable }
    }

    /// How many products there are.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// The product with `id`.
    pub fn get(&self, id: &ProductId) -> Option<&Product> {
        self.products
            .binary_search_by(|p| p.id.as_str().cmp(id.as_str()))
            .ok()
            .and_then(|i| self.products.get(i))
    }

    /// A page of the products, by id, that match `query` (all of them when `None`):
    /// every word must appear in the name, the description or a category.
    pub fn page(&self, query: Option<&SearchQuery>, page: &PageRequest) -> ProductPage {
        let matching = |i: &usize| match query {
            None => true,
            Some(q) => q.words.iter().all(|w| self.searchable[*i].contains(w.as_str())),
        };
        let total = (0..self.products.len()).filter(matching).count();
        let start = match &page.after {
            Some(after) => self.products.partition_point(|p| p.id.as_str() <= after.as_str()),
            None => 0,
        };
        let size = page.size as usize;
        let mut found: Vec<Product> = (start..self.products.len())
            .filter(matching)
            .take(size + 1)
            .map(|i| self.products[i].clone())
            .collect();
        let more = found.len() > size;
        found.truncate(size);
        let next_after = if more {
            found.last().map(|p| p.id.as_str().to_string())
        } else {
            None
        };
        ProductPage {
            products: found,
            next_after,
            total: total as u64,
        }
    }
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

    fn product(id: &str, name: &str, categories: &[&str]) -> Product {
        Product {
            id: ProductId::parse(id).unwrap(),
            name: name.into(),
            description: format!("A {name}."),
            picture: String::new(),
            price: Price {
                currency_code: "USD".into(),
                units: 1,
                nanos: 0,
            },
            categories: categories.iter().map(|c| c.to_string()).collect(),
            weight_grams: 100,
        }
    }

    #[test]
    fn the_catalog_pages_and_searches_in_memory() {
        let catalog = Catalog::new(vec![
            product("mug", "Mug", &["kitchen"]),
            product("bowl", "Bowl", &["kitchen"]),
            product("lamp", "Lamp", &["living-room"]),
        ]);
        let mut v = Violations::new();
        let first = PageRequest::parse(1, "", "", &mut v).unwrap();
        let page = catalog.page(None, &first);
        assert_eq!((page.products[0].id.as_str(), page.total), ("bowl", 3));
        let token = first.next_token(page.next_after.as_deref().unwrap());
        let second = PageRequest::parse(1, &token, "", &mut v).unwrap();
        assert_eq!(catalog.page(None, &second).products[0].id.as_str(), "lamp");
        let kitchen = SearchQuery::parse("KITCHEN").unwrap();
        let all = PageRequest::parse(0, "", "", &mut v).unwrap();
        let found = catalog.page(Some(&kitchen), &all);
        let ids: Vec<&str> = found.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            (ids, found.total, found.next_after),
            (vec!["bowl", "mug"], 2, None)
        );
        assert_eq!(
            catalog
                .get(&ProductId::parse("lamp").unwrap())
                .map(|p| p.name.as_str()),
            Some("Lamp")
        );
        assert!(catalog.get(&ProductId::parse("sofa").unwrap()).is_none());
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any search text is refused or becomes 1+ lowercase words without
        /// whitespace, from at most 200 characters; never a panic.
        #[test]
        fn any_search_text_is_bounded_or_refused(text in "\\PC{0,210}|[A-Za-z %_\\\\]{0,40}") {
            match SearchQuery::parse(&text) {
                Ok(query) => {
                    proptest::prop_assert!(text.chars().count() <= MAX_QUERY_CHARS);
                    proptest::prop_assert!(!query.words.is_empty());
                    for word in &query.words {
                        proptest::prop_assert!(!word.is_empty() && !word.contains(char::is_whitespace));
                        proptest::prop_assert_eq!(word.clone(), word.to_lowercase());
                    }
                }
                Err(reason) => proptest::prop_assert!(!reason.is_empty()),
            }
        }
    }
}
