//! sync-svc's schema. A shipped migration is never edited; changes come as new ones.

use sea_orm_migration::prelude::*;

mod m0001_create_sync_tables;
mod m0002_create_closed_rooms;
mod m0003_log_room_changes_in_the_database;
mod m0004_schedule_rate_changes;
mod m0005_library_items;

/// Runs sync-svc's migrations, recorded in its own table so that services can share a
/// PostgreSQL database (one schema each) without mixing histories.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_sync_tables::Migration),
            Box::new(m0002_create_closed_rooms::Migration),
            Box::new(m0003_log_room_changes_in_the_database::Migration),
            Box::new(m0004_schedule_rate_changes::Migration),
            Box::new(m0005_library_items::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "sync_migrations".into_iden()
    }
}
