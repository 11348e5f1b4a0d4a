-- A batch of postings to one account in one call: one round trip, one
-- transaction, one commit (group commit in the instance;
-- docs/architecture.md).
--
-- Postings are applied in array order, each judged on the balance left by
-- the ones before it: a refused debit refuses only itself. Element i of
-- every array describes posting i; p_keys[i] / p_fingerprints[i] are NULL
-- without an Idempotency-Key. Returns one row:
--   outcomes[i]   'posted', 'limit_exceeded' or 'overflow' for a posting
--                 judged now; for one whose key is already recorded,
--                 'replayed_posted' or 'replayed_limit_exceeded' (the same
--                 request again: the recorded outcome, nothing applied) or
--                 'key_reused' (another request under that key)
--   balances[i]   the balance right after posting i (cents), or the one
--                 recorded for a replayed key; NULL unless (replayed_)posted
--   credit_limit  the account's limit (cents); NULL (and no outcomes) when
--                 the account does not exist
--
-- Concurrency. Without idempotency keys the batch is judged on the latest
-- committed balance read without a lock, then written with
-- `UPDATE … WHERE balance = <the balance it was judged on>`: that takes the
-- row lock and proves the judgement still holds (the rule depends on the
-- balance alone); when another batch moved the balance in between, the
-- batch is judged again under the row lock. A batch that posts nothing
-- (only refusals) writes nothing, so it costs no WAL flush. With keys the
-- row is locked first (SELECT … FOR UPDATE): keys are only ever written
-- under their account's row lock, so the key lookup cannot race, and a key
-- repeated inside the batch finds the row its first use inserted. Either
-- way a batch locks one row, so batches cannot deadlock; each statement of
-- this VOLATILE function reads the latest committed state. The CHECK on
-- accounts.balance stays the second line of defence: violating it aborts
-- the whole batch.
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
    locked   boolean := cardinality(array_remove(p_keys, NULL)) > 0;
    running  bigint;
    opening  bigint;
    delta    bigint;
    outcome  text;
    posted   bigint;
    accepted integer[];
    recorded record;
BEGIN
    LOOP
        IF locked THEN
            SELECT a.balance, a.credit_limit INTO running, credit_limit
              FROM accounts a WHERE a.id = p_account FOR UPDATE;
        ELSE
            SELECT a.balance, a.credit_limit INTO running, credit_limit
              FROM accounts a WHERE a.id = p_account;
        END IF;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        opening := running;
        outcomes := '{}';
        balances := '{}';
        accepted := '{}';
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
                        outcomes := outcomes || ('replayed_' || recorded.outcome);
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
                accepted := accepted || i;
                outcome := 'posted';
            END IF;
            IF p_keys[i] IS NOT NULL THEN
                INSERT INTO idempotency_keys (account_id, key, fingerprint, outcome, balance, credit_limit)
                VALUES (p_account, p_keys[i], p_fingerprints[i], outcome, posted, post_batch.credit_limit);
            END IF;
            outcomes := outcomes || outcome;
            balances := balances || posted;
        END LOOP;
        IF cardinality(accepted) = 0 THEN
            RETURN;
        END IF;
        IF locked THEN
            UPDATE accounts SET balance = running WHERE id = p_account;
            EXIT;
        END IF;
        UPDATE accounts SET balance = running WHERE id = p_account AND balance = opening;
        EXIT WHEN FOUND;
        -- Another batch moved the balance since it was read: judge again,
        -- this time under the row lock.
        locked := true;
    END LOOP;
    INSERT INTO transactions (account_id, amount, kind, description)
    SELECT p_account, p_amounts[a.i], p_kinds[a.i], p_descriptions[a.i]
      FROM unnest(accepted) WITH ORDINALITY AS a (i, n)
     ORDER BY a.n;
END
$$;
