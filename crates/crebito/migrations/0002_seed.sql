-- The five accounts of docs/contract.md §2, balance 0. Id 6 must not exist.
INSERT INTO accounts (id, credit_limit, balance) VALUES
    (1, 100000, 0),
    (2, 80000, 0),
    (3, 1000000, 0),
    (4, 10000000, 0),
    (5, 500000, 0)
ON CONFLICT (id) DO NOTHING;
