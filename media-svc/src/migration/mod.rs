//! media-svc's schema. A shipped migration is never edited; changes come as new ones.

use sea_orm_migration::prelude::*;

mod m0001_create_media_tables;
mod m0002_conversions;
mod m0003_subtitle_tracks;

/// Runs media-svc's migrations, recorded in its own table so that services can share a
/// PostgreSQL database (one schema each) without mixing histories.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_media_tables::Migration),
            Box::new(m0002_conversions::Migration),
            Box::new(m0003_subtitle_tracks::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "media_migrations".into_iden()
    }
}
