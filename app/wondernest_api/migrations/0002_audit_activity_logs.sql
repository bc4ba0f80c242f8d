-- Who did what, when, from where. Rows outlive the user they mention.
CREATE TABLE audit.activity_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid REFERENCES core.users (id) ON DELETE SET NULL,
    action      text NOT NULL,
    ip_address  inet,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_activity_logs_user_id ON audit.activity_logs (user_id);
CREATE INDEX idx_activity_logs_created_at ON audit.activity_logs (created_at);
