FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SECRET_KEY=build-only-key-build-only-key-build-only-key-0123456789 \
    DJANGO_SETTINGS_MODULE=webapp.settings_production python manage.py collectstatic --noinput
EXPOSE 8000
