"""One APIRouter per concern of the HTTP edge."""
