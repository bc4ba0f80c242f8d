-- Accounts and their refresh-token sessions. Refresh tokens are stored only as
-- SHA-256 digests; a session row is one link of a rotation chain (family).
CREATE TABLE core.users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) <= 320),
    password_hash text NOT NULL,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);
CREATE UNIQUE INDEX idx_users_email ON core.users (lower(email));
CREATE INDEX idx_users_active ON core.users (is_active);

CREATE TABLE core.user_sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id  uuid NOT NULL,
    user_id    uuid NOT NULL REFERENCES core.users (id) ON DELETE CASCADE,
    token_hash text NOT NULL CHECK (length(token_hash) = 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    rotated_at timestamptz,
    revoked_at timestamptz,
    ip_address inet,
    user_agent text
);
CREATE UNIQUE INDEX idx_user_sessions_token ON core.user_sessions (token_hash);
CREATE INDEX idx_user_sessions_user_id ON core.user_sessions (user_id);
CREATE INDEX idx_user_sessions_family_id ON core.user_sessions (family_id);
