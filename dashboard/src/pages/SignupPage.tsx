import { useState, type FormEvent } from 'react';
import { Link, Navigate, useNavigate } from 'react-router';
import { useAuth } from '../auth/AuthContext';
import { FormError } from '../components/States';

export function SignupPage() {
  const { signedIn, signup } = useAuth();
  const navigate = useNavigate();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [org, setOrg] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  if (signedIn && !busy) return <Navigate to="/" replace />;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signup({
        email: email.trim(),
        password,
        ...(name.trim() ? { name: name.trim() } : {}),
        ...(org.trim() ? { organization_name: org.trim() } : {}),
      });
      navigate('/', { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="auth-page">
      <form className="auth-card form" onSubmit={submit} aria-labelledby="signup-title">
        <div className="brand brand-large">
          <img src="/favicon.svg" alt="" width={32} height={32} /> Cairn
        </div>
        <h1 id="signup-title">Sign up</h1>
        <p className="muted">Creates your account, an organisation you own, and a first project.</p>
        <div className="field">
          <label htmlFor="signup-email">Email</label>
          <input id="signup-email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="signup-password">Password</label>
          <input
            id="signup-password"
            type="password"
            autoComplete="new-password"
            required
            minLength={10}
            aria-describedby="signup-password-help"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <small id="signup-password-help" className="muted">
            At least 10 characters of two kinds or more (lower, upper, digits, symbols); not a common password.
          </small>
        </div>
        <div className="field">
          <label htmlFor="signup-name">Your name (optional)</label>
          <input id="signup-name" autoComplete="name" maxLength={200} value={name} onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="signup-org">Organisation name (optional)</label>
          <input id="signup-org" maxLength={200} value={org} onChange={(e) => setOrg(e.target.value)} />
        </div>
        <FormError error={error} />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Signing up…' : 'Sign up'}
        </button>
        <p className="muted">
          Have an account? <Link to="/login">Log in</Link>
        </p>
      </form>
    </div>
  );
}
