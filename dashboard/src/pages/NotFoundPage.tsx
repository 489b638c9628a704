import { Link } from 'react-router';

export function NotFoundPage() {
  return (
    <div className="auth-page">
      <div className="auth-card">
        <h1>Page not found</h1>
        <p>
          <Link to="/">Go to your projects</Link>
        </p>
      </div>
    </div>
  );
}
