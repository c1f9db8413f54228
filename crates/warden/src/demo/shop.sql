-- The demo company's database: customers, products and orders. Fictional people and data.
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    city TEXT NOT NULL,
    joined TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    total REAL NOT NULL,
    status TEXT NOT NULL,
    ordered_at TEXT NOT NULL
);
-- Not readable by the demo agent: the SQL policy allow-lists the three tables above.
CREATE TABLE payroll (employee TEXT, salary REAL);

INSERT INTO customers VALUES
 (1, 'Ada Lovelace', 'ada.lovelace@example.com', 'London', '2024-01-15'),
 (2, 'Grace Hopper', 'grace.hopper@example.com', 'New York', '2024-02-03'),
 (3, 'Alan Turing', 'alan.turing@example.org', 'Manchester', '2024-02-20'),
 (4, 'Katherine Johnson', 'k.johnson@example.com', 'Hampton', '2024-03-11'),
 (5, 'Linus Torvalds', 'linus@example.org', 'Portland', '2024-04-02'),
 (6, 'Margaret Hamilton', 'margaret.h@example.com', 'Boston', '2024-04-28'),
 (7, 'Tim Berners-Lee', 'tbl@example.org', 'Geneva', '2024-05-19'),
 (8, 'Barbara Liskov', 'b.liskov@example.com', 'Cambridge', '2024-06-07'),
 (9, 'Donald Knuth', 'knuth@example.org', 'Stanford', '2024-07-22'),
 (10, 'Radia Perlman', 'radia@example.com', 'Seattle', '2024-08-30');

INSERT INTO products VALUES
 (1, 'Mechanical keyboard', 'hardware', 129.0),
 (2, 'Ergonomic mouse', 'hardware', 59.0),
 (3, '4K monitor', 'hardware', 399.0),
 (4, 'Standing desk', 'furniture', 549.0),
 (5, 'Desk lamp', 'furniture', 45.0),
 (6, 'Noise-cancelling headphones', 'audio', 299.0),
 (7, 'USB-C dock', 'hardware', 189.0),
 (8, 'Notebook pack', 'stationery', 12.5);

INSERT INTO orders VALUES
 (1, 1, 3, 2, 798.0, 'delivered', '2024-03-01'),
 (2, 1, 1, 1, 129.0, 'delivered', '2024-03-05'),
 (3, 2, 4, 1, 549.0, 'delivered', '2024-03-09'),
 (4, 3, 6, 1, 299.0, 'delivered', '2024-03-18'),
 (5, 4, 2, 3, 177.0, 'delivered', '2024-04-02'),
 (6, 5, 7, 2, 378.0, 'shipped', '2024-04-15'),
 (7, 6, 3, 1, 399.0, 'delivered', '2024-05-01'),
 (8, 2, 6, 2, 598.0, 'delivered', '2024-05-12'),
 (9, 7, 8, 10, 125.0, 'delivered', '2024-05-30'),
 (10, 8, 5, 2, 90.0, 'delivered', '2024-06-14'),
 (11, 9, 1, 1, 129.0, 'shipped', '2024-07-25'),
 (12, 10, 4, 2, 1098.0, 'processing', '2024-09-02'),
 (13, 1, 6, 1, 299.0, 'processing', '2024-09-10'),
 (14, 3, 7, 1, 189.0, 'delivered', '2024-09-21'),
 (15, 6, 2, 2, 118.0, 'shipped', '2024-10-03'),
 (16, 4, 3, 1, 399.0, 'processing', '2024-10-19'),
 (17, 5, 8, 4, 50.0, 'delivered', '2024-11-01'),
 (18, 2, 1, 2, 258.0, 'processing', '2024-11-08');

INSERT INTO payroll VALUES ('Jo', 120000), ('Sam', 95000);
