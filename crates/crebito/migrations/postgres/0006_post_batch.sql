-- A batch of postings to one account in one call: one round trip, one
-- transaction, one commit (group commit in the instance;
-- docs/architecture.md).
--
-- Postings are applied in array order, each judged on the balance left by
-- the ones before it: a refused debit refuses only itself. Element i of
-- every array describes posting i; p_keys[i] / p_fingerprints[i] are NULL
-- without an Idempotency-Key. Returns one row:
--   outcomes[i]   'posted', 'limit_exceeded', 'overflow' or 'key_reused'
--   balances[i]   the balance right after posting i (cents), or the one
--                 recorded for a replayed key; NULL unless posted
--   credit_limit  the account's limit (cents); NULL (and no outcomes) when
--                 the account does not exist
--
-- Concurrency: the account's row is locked first, so everything below reads
-- the latest committed state (each statement of a VOLATILE function takes a
-- new snapshot) and batches on one account run one after another; a batch
-- locks one row only, so batches cannot deadlock. Idempotency keys are only
-- written under their account's row lock, so the key lookup cannot race; a
-- key repeated inside the batch finds the row its first use inserted. The
-- CHECK on accounts.balance stays the second line of defence: violating it
-- aborts the whole batch.
CREATE FUNCTION post_batch(
    p_account      integer,
    p_amounts      bigint[],
    p_kinds        text[],
    p_descriptions text[],
    p_keys         text[],
    p_fingerprints text[],
    OUT outcomes   text[],
    OUT balances   bigint[],
    OUT credit_limit bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    running  bigint;
    opening  bigint;
    delta    bigint;
    outcome  text;
    posted   bigint;
    recorded record;
BEGIN
    SELECT a.balance, a.credit_limit INTO running, credit_limit
      FROM accounts a WHERE a.id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    opening := running;
    outcomes := '{}';
    balances := '{}';
    FOR i IN 1 .. coalesce(array_length(p_amounts, 1), 0) LOOP
        posted := NULL;
        IF p_keys[i] IS NOT NULL THEN
            SELECT k.fingerprint, k.outcome, k.balance INTO recorded
              FROM idempotency_keys k
             WHERE k.account_id = p_account AND k.key = p_keys[i];
            IF FOUND THEN
                IF recorded.fingerprint <> p_fingerprints[i] THEN
                    outcomes := outcomes || 'key_reused'::text;
                ELSE
                    outcomes := outcomes || recorded.outcome;
                    posted := recorded.balance;
                END IF;
                balances := balances || posted;
                CONTINUE;
            END IF;
        END IF;
        delta := CASE p_kinds[i] WHEN 'c' THEN p_amounts[i] ELSE -p_amounts[i] END;
        IF (delta > 0 AND running > 9223372036854775807 - delta)
           OR (delta < 0 AND running < (-9223372036854775807 - 1) - delta) THEN
            -- Not remembered under a key, like a malformed request.
            outcomes := outcomes || 'overflow'::text;
            balances := balances || posted;
            CONTINUE;
        END IF;
        IF running + delta < -credit_limit THEN
            outcome := 'limit_exceeded';
        ELSE
            running := running + delta;
            posted := running;
            INSERT INTO transactions (account_id, amount, kind, description)
            VALUES (p_account, p_amounts[i], p_kinds[i], p_descriptions[i]);
            outcome := 'posted';
        END IF;
        IF p_keys[i] IS NOT NULL THEN
            INSERT INTO idempotency_keys (account_id, key, fingerprint, outcome, balance, credit_limit)
            VALUES (p_account, p_keys[i], p_fingerprints[i], outcome, posted, post_batch.credit_limit);
        END IF;
        outcomes := outcomes || outcome;
        balances := balances || posted;
    END LOOP;
    IF running <> opening THEN
        UPDATE accounts SET balance = running WHERE id = p_account;
    END IF;
END
$$;
