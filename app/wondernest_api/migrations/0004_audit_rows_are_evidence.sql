-- Audit rows are evidence. The database alone numbers and dates them, whatever
-- an INSERT says (OVERRIDING SYSTEM VALUE included: a forged future id would
-- make later inserts fail); once written, only the table's owner (the
-- migrations) changes or removes one; and a row outlives the user it
-- mentions, untouched, rather than being rewritten by a cascade.
ALTER TABLE audit.activity_logs DROP CONSTRAINT activity_logs_user_id_fkey;

CREATE FUNCTION audit.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.id := nextval(pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id'));
    NEW.created_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION audit.written_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
        RAISE EXCEPTION '%.% rows are evidence: % may add them, not change or remove them',
            TG_TABLE_SCHEMA, TG_TABLE_NAME, current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER activity_logs_stamped BEFORE INSERT ON audit.activity_logs
    FOR EACH ROW EXECUTE FUNCTION audit.stamp();
CREATE TRIGGER activity_logs_written_once BEFORE UPDATE OR DELETE ON audit.activity_logs
    FOR EACH ROW EXECUTE FUNCTION audit.written_once();
CREATE TRIGGER activity_logs_not_truncated BEFORE TRUNCATE ON audit.activity_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit.written_once();
